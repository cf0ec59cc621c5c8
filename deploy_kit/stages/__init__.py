"""The conversion stages, each a plain function: export (Paddle → ONNX), optimize (ONNX → TensorRT-friendly
ONNX), build (ONNX → TensorRT engine + metadata). `deploy_kit.pipeline` runs and caches them."""
