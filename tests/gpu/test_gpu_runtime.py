"""GPU kernels and the ONNX Runtime CUDA executor on the device, against their CPU twins."""

from __future__ import annotations

import numpy as np
import pytest

from deploy_kit.cuda import CudaContext, Stream
from deploy_kit.backends.base import DeviceExecutor, TensorSpec
from deploy_kit.runtime.gpu_pipeline import GpuPipeline
from deploy_kit.paddleseg.postprocess import postprocess_cpu
from deploy_kit.paddleseg.preprocess import PreprocessSpec, preprocess_cpu
from deploy_kit import Segmenter

SPEC = PreprocessSpec(256, 512, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True,
                      ({"type": "Resize", "target_size": [512, 256]},
                       {"type": "Normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}), True)
SIZES = [(256, 512), (37, 1000), (300, 451), (1024, 2048), (7, 5), (128, 256)]


class ShapesOnly(DeviceExecutor):
    """An executor that only declares tensor types, to exercise the kernels around it."""

    name = "shapes-only"

    def __init__(self, input_dtype, output_dtype, output_shape) -> None:
        self.input = TensorSpec("x", np.dtype(input_dtype), (-1, 3, 256, 512))
        self.output = TensorSpec("y", np.dtype(output_dtype), (-1, *output_shape))

    def enqueue(self, input_ptr, output_ptr, batch, stream) -> None:
        raise AssertionError("kernel tests never run inference")


@pytest.fixture
def cuda(gpu):
    with CudaContext(0) as context, Stream() as stream:
        yield context, stream


@pytest.mark.parametrize("dtype,tolerance_units", [(np.float32, 1.0), (np.float16, 2.0)])
def test_preprocess_kernel_matches_paddleseg_cpu_arithmetic(cuda, photos, dtype, tolerance_units):
    rng = np.random.default_rng(0)
    images = list(photos) + [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
    pipeline = GpuPipeline(ShapesOnly(dtype, np.float32, (5, 256, 512)), SPEC, *cuda, max_batch=len(images))
    try:
        got = pipeline.preprocess_only(images)
    finally:
        pipeline.close()
    want = np.stack([preprocess_cpu(im, SPEC) for im in images])
    # One unit in the last place of the uint8 input, after normalisation: 1/255 / std.
    limit = tolerance_units / 255 / min(SPEC.std)
    assert got.dtype == dtype and got.shape == want.shape
    assert np.abs(got.astype(np.float64) - want).max() <= limit


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
def test_postprocess_kernel_matches_cpu_twin_exactly(cuda, dtype):
    rng = np.random.default_rng(1)
    shape = (1, 64, 128) if dtype == np.int32 else (5, 64, 128)
    outputs = (rng.integers(0, 5, (len(SIZES), *shape)) if dtype == np.int32
               else rng.normal(0, 3, (len(SIZES), *shape))).astype(dtype)
    pipeline = GpuPipeline(ShapesOnly(np.float32, dtype, shape), SPEC, *cuda, max_batch=len(SIZES))
    try:
        got = pipeline.postprocess_only(outputs, SIZES)
    finally:
        pipeline.close()
    for out, size, labels in zip(outputs, SIZES, got):
        np.testing.assert_array_equal(labels, postprocess_cpu(out, size))


def test_onnxruntime_cuda_path_agrees_with_cpu_path(gpu, gpu_model, photos):
    from deploy_kit.backends.onnxruntime.cuda import cuda_provider_available

    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a working CUDA provider")
    with Segmenter(gpu_model, backend="onnxruntime-cuda", max_batch=4) as on_gpu:
        assert on_gpu.backend == "onnxruntime-cuda"
        gpu_labels = on_gpu.predict(photos) + on_gpu.predict(photos[:1])
        times = on_gpu.pipeline.times
    with Segmenter(gpu_model, backend="onnxruntime-cpu", max_batch=4) as on_cpu:
        cpu_labels = on_cpu.predict(photos) + on_cpu.predict(photos[:1])
    agreement = np.mean(np.concatenate([(a == b).ravel() for a, b in zip(gpu_labels, cpu_labels)]))
    assert agreement >= 0.999, agreement
    assert times.inference > 0 and times.preprocess > 0


def test_auto_backend_picks_the_gpu(gpu, gpu_model, capsys):
    from deploy_kit.backends.onnxruntime.cuda import cuda_provider_available

    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a working CUDA provider")
    with Segmenter(gpu_model) as segmenter:
        assert segmenter.backend in ("onnxruntime-cuda", "tensorrt", "tensorrt-rtx")
        assert gpu.name in segmenter.choice.reason


def test_cuda_graph_replays_captured_work(cuda, photos):
    """The CudaGraph wrapper on our own kernels: a replay into a zeroed buffer writes what direct launches wrote."""
    from cuda.bindings import driver

    from deploy_kit.cuda import CudaGraph, PinnedBuffer, check_cuda

    context, stream = cuda
    pipeline = GpuPipeline(ShapesOnly(np.float32, np.float32, (5, 256, 512)), SPEC, context, stream, max_batch=1)
    try:
        direct = pipeline.preprocess_only(photos[:1])
        src, offsets = pipeline._upload(photos[:1])
        nbytes = pipeline.input_image_bytes
        with CudaGraph(stream, lambda: pipeline._queue_preprocess(photos[:1], src, offsets)) as graph, \
                PinnedBuffer(nbytes) as host:
            check_cuda(driver.cuMemsetD8Async(pipeline.model_input.ptr, 0, nbytes, stream.handle))
            graph.launch(stream)
            stream.copy_to_host(host, pipeline.model_input, nbytes)
            stream.synchronize()
            replayed = host.view(np.float32, direct.shape).copy()
        assert np.abs(replayed).max() > 0
        np.testing.assert_array_equal(direct, replayed)
    finally:
        pipeline.close()


def test_onnxruntime_replays_static_batch_cuda_graphs(gpu, gpu_model, photos):
    """One static-batch session per batch size, each replaying its own CUDA graph; --cuda-graph is
    accepted (it has nothing to add) and the labels are those of the CPU path."""
    from deploy_kit.backends.onnxruntime.cuda import cuda_provider_available

    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a working CUDA provider")
    with Segmenter(gpu_model, backend="onnxruntime-cuda", max_batch=2, cuda_graph=True) as on_gpu:
        gpu_labels = on_gpu.predict(photos) + on_gpu.predict(photos)  # later runs replay the graphs
        executor = on_gpu.pipeline.executor
        assert sorted(executor.graph_replays) == [1, 2] and all(executor.graph_replays.values())
    with Segmenter(gpu_model, backend="onnxruntime-cpu", max_batch=2) as on_cpu:
        cpu_labels = on_cpu.predict(photos) * 2
    agreement = np.mean(np.concatenate([(a == b).ravel() for a, b in zip(gpu_labels, cpu_labels)]))
    assert agreement >= 0.999, agreement
