"""FP16 and INT8 graphs on ONNX Runtime CUDA agree with the same graphs on the CPU within the limits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from deploy_kit import Segmenter
from deploy_kit.convert.precision import DEFAULT_MAX_MIOU_LOSS


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_graphs_on_cuda_agree_with_cpu(gpu, photos, precision):
    from deploy_kit.backends.onnxruntime.cuda import cuda_provider_available

    folder = os.environ.get("DEPLOY_KIT_GPU_PRECISION_MODEL")
    if not folder or not (Path(folder) / f"model.{precision}.onnx").is_file():
        pytest.skip(f"needs DEPLOY_KIT_GPU_PRECISION_MODEL: a convert output with model.{precision}.onnx")
    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a working CUDA provider")
    with Segmenter(folder, backend="onnxruntime-cuda", precision=precision) as on_gpu:
        gpu_labels = on_gpu.predict(photos)
    with Segmenter(folder, backend="onnxruntime-cpu", precision=precision) as on_cpu:
        cpu_labels = on_cpu.predict(photos)
    agreement = np.mean(np.concatenate([(a == b).ravel() for a, b in zip(gpu_labels, cpu_labels)]))
    # Pixel disagreement bounds the mIoU points the GPU can lose against the CPU graph.
    assert 100 * (1 - agreement) <= DEFAULT_MAX_MIOU_LOSS[precision], agreement
