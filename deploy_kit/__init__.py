"""deploy-kit: PaddleSeg inference models to fast, correct TensorRT deployments on NVIDIA GPUs."""

__version__ = "0.1.0"
