"""CPU deployment conversions of an encoder, shared by serving and the speed analysis.

- ``runners``: the runner contract (one message in, last hidden state out) and the fp32 PyTorch runner;
- ``int8``: dynamic int8 quantization of the Linear layers;
- ``onnx_export``: ONNX export with a dynamic sequence length, run by ONNX Runtime.
"""
