"""CPU deployment conversions of an encoder, shared by serving and the speed analysis.

- ``runners``: the runner contract (a padded batch in, last hidden state out), the fp32 PyTorch
  runner and the ONNX Runtime session runner;
- ``onnx_export``: ONNX export with dynamic batch and sequence axes;
- ``int8``: ONNX Runtime int8 quantization of the exported graph (dynamic with token scaling and
  measured exclusions, or block-wise; configurable), with ``int8_layers`` (the weight MatMuls by
  block and role, the per-token scaling rewrite) and ``int8_auto`` (``exclude=auto``: per-layer
  sensitivity on held-out text, and the choice);
- ``variants``: fp32 / onnx / int8 built once into a folder and returned as runners.
"""
