"""CPU deployment conversions of an encoder (ONNX export, int8 quantization, runners), shared by
serving and the speed analysis."""
