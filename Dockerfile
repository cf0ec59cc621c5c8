# deploy-kit with full TensorRT.
#   x86-64 (TensorRT 10 from NVIDIA's container):  docker build -t deploy-kit .
#   Jetson Orin (JetPack 6, L4T r36, TensorRT 10.3): docker build --build-arg PLATFORM=jetson -t deploy-kit:l4t .
# The Jetson image converts ONNX to engines and runs inference; export Paddle models to ONNX on x86-64
# (`deploy-kit convert MODEL --onnx-only`) where Paddle wheels exist, or set DEPLOY_KIT_EXTRAS=cuda,export if yours has them.
ARG PLATFORM=x86
ARG X86_IMAGE=nvcr.io/nvidia/tensorrt:24.08-py3
ARG JETSON_IMAGE=nvcr.io/nvidia/l4t-jetpack:r36.4.0

FROM ${X86_IMAGE} AS base-x86
ENV DEPLOY_KIT_EXTRAS=export,cuda

FROM ${JETSON_IMAGE} AS base-jetson
ENV DEPLOY_KIT_EXTRAS=cuda
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip python3-libnvinfer && \
    rm -rf /var/lib/apt/lists/*

FROM base-${PLATFORM}
WORKDIR /opt/deploy-kit
COPY pyproject.toml README.md ./
COPY deploy_kit ./deploy_kit
COPY models ./models
RUN python3 -m pip install --no-cache-dir -e ".[${DEPLOY_KIT_EXTRAS}]"
# The container's own TensorRT (tensorrt module) is found first; `deploy-kit doctor` shows what was loaded.
ENTRYPOINT ["deploy-kit"]
CMD ["--help"]
