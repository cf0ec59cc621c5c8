"""Producing a deployable model: the stages, each a plain function (export: Paddle → ONNX; optimize: ONNX →
TensorRT-friendly ONNX; precision: FP16 / INT8 graphs with an accuracy report; the engine build through
the TensorRT backend) and `pipeline`, which runs and caches them into a convert output folder."""
