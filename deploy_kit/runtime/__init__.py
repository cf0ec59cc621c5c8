"""The inference runtime: a small CUDA layer on cuda.bindings, GPU pre/post-processing kernels and
executors (TensorRT, ONNX Runtime CUDA, ONNX Runtime CPU) behind one interface."""
