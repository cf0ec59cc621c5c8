"""The inference runtime: GPU pre/post-processing kernels (NVRTC), the GPU pipeline around a device
executor, and sessions that own the CUDA resources. It runs what the backends open; it never converts."""
