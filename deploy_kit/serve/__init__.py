"""Serving on NVIDIA Triton Inference Server: in-process through PyTriton (`deploy-kit serve`), and model
repositories for the NGC Triton container (`deploy-kit export-triton`)."""
