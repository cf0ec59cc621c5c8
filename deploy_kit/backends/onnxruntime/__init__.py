"""ONNX Runtime backends: the CPU provider (runs anywhere) and the CUDA provider on the runtime's stream."""
