"""GPU kernels and the ONNX Runtime CUDA executor on the device, against their CPU twins."""

from __future__ import annotations

from concurrent.futures import Future

import numpy as np
import pytest

from deploy_kit.runtime.prepost import GpuPrePost
from deploy_kit.paddleseg.postprocess import postprocess_cpu
from deploy_kit.paddleseg.preprocess import PreprocessSpec, preprocess_cpu
from deploy_kit import Segmenter

SPEC = PreprocessSpec(256, 512, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True,
                      ({"type": "Resize", "target_size": [512, 256]},
                       {"type": "Normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}), True)
SIZES = [(256, 512), (37, 1000), (300, 451), (1024, 2048), (7, 5), (128, 256)]


@pytest.fixture
def prepost(gpu):
    with GpuPrePost() as kernels:
        yield kernels


@pytest.mark.parametrize("dtype,tolerance_units", [(np.float32, 1.0), (np.float16, 2.0)])
def test_preprocess_kernel_matches_paddleseg_cpu_arithmetic(prepost, photos, dtype, tolerance_units):
    rng = np.random.default_rng(0)
    images = list(photos) + [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
    got = prepost.preprocess(images, SPEC, np.dtype(dtype))
    want = np.stack([preprocess_cpu(im, SPEC) for im in images])
    # One unit in the last place of the uint8 input, after normalisation: 1/255 / std.
    limit = tolerance_units / 255 / min(SPEC.std)
    assert got.dtype == dtype and got.shape == want.shape
    assert np.abs(got.astype(np.float64) - want).max() <= limit


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
def test_postprocess_kernel_matches_cpu_twin_exactly(prepost, dtype):
    rng = np.random.default_rng(1)
    shape = (1, 64, 128) if dtype == np.int32 else (5, 64, 128)
    outputs = (rng.integers(0, 5, (len(SIZES), *shape)) if dtype == np.int32
               else rng.normal(0, 3, (len(SIZES), *shape))).astype(dtype)
    got = prepost.postprocess(outputs, SIZES)
    for out, size, labels in zip(outputs, SIZES, got):
        np.testing.assert_array_equal(labels, postprocess_cpu(out, size))


def test_onnxruntime_cuda_path_agrees_with_cpu_path(gpu, gpu_model, photos):
    from deploy_kit.backends.onnxruntime.cuda import cuda_provider_available

    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a working CUDA provider")
    with Segmenter(gpu_model, backend="onnxruntime-cuda", max_batch=4) as on_gpu:
        assert on_gpu.backend == "onnxruntime-cuda"
        on_gpu.pipeline.timing = True
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


def test_cuda_graph_replays_captured_work(prepost, photos):
    """The CudaGraph wrapper on our own kernels: a replay into a zeroed buffer writes what direct launches wrote."""
    from cuda.bindings import driver

    from deploy_kit.cuda import CudaGraph, DeviceBuffer, PinnedBuffer, check_cuda
    from deploy_kit.runtime.buffers import PinnedPool, StagedImage, packed_offsets, upload

    direct = prepost.preprocess(photos[:1], SPEC, np.dtype(np.float32))
    stream, nbytes = prepost.stream, direct.nbytes
    pool = PinnedPool()
    with DeviceBuffer(photos[0].nbytes) as src, DeviceBuffer(nbytes) as dst, PinnedBuffer(nbytes) as host:
        staged = [StagedImage(photos[0], pool)]
        offsets = packed_offsets([image.nbytes for image in staged])
        upload(list(zip(staged, offsets)), src, stream)
        sizes = [photos[0].shape[:2]]
        with CudaGraph(stream, lambda: prepost.kernels.preprocess_batch(stream, SPEC, src.ptr, offsets, sizes,
                                                                         dst.ptr, np.dtype(np.float32))) as graph:
            check_cuda(driver.cuMemsetD8Async(dst.ptr, 0, nbytes, stream.handle))
            graph.launch(stream)
            stream.copy_to_host(host, dst, nbytes)
            stream.synchronize()
        replayed = host.view(np.float32, direct.shape).copy()
    pool.close()
    assert np.abs(replayed).max() > 0
    np.testing.assert_array_equal(direct, replayed)


def test_onnxruntime_replays_static_batch_cuda_graphs(gpu, gpu_model, photos):
    """One static-batch session per batch size, each replaying its own CUDA graph; --cuda-graph is
    accepted (it has nothing to add) and the labels are those of the CPU path."""
    from deploy_kit.backends.onnxruntime.cuda import cuda_provider_available

    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a working CUDA provider")
    with Segmenter(gpu_model, backend="onnxruntime-cuda", max_batch=2, cuda_graph=True) as on_gpu:
        gpu_labels = on_gpu.predict(photos) + on_gpu.predict(photos)  # later runs replay the graphs
        executor = on_gpu.pipeline.executor
        assert sorted(shape[0] for shape in executor.graph_replays) == [1, 2] and all(executor.graph_replays.values())
    with Segmenter(gpu_model, backend="onnxruntime-cpu", max_batch=2) as on_cpu:
        cpu_labels = on_cpu.predict(photos) * 2
    agreement = np.mean(np.concatenate([(a == b).ravel() for a, b in zip(gpu_labels, cpu_labels)]))
    assert agreement >= 0.999, agreement


def test_batches_in_flight_and_threads_give_the_labels_of_one_at_a_time(gpu, gpu_model, photos):
    """Three batches in flight on their own buffers (uploads overlapping compute), and four threads
    predicting at once, give exactly the labels of the same batches run one at a time (the reference
    keeps the batch sizes: each batch size has its own graph, whose arithmetic may differ in the last bit)."""
    from concurrent.futures import ThreadPoolExecutor

    from deploy_kit.backends.onnxruntime.cuda import cuda_provider_available

    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a working CUDA provider")
    images = [photos[i % len(photos)] for i in range(23)]
    with Segmenter(gpu_model, backend="onnxruntime-cuda", max_batch=2, in_flight=3) as segmenter:
        in_pairs = segmenter.predict(images)  # batches of two, each collected before the next starts
        one_by_one = [segmenter.predict(image)[0] for image in images]
        streamed = list(segmenter.stream(images, workers=4))
        with ThreadPoolExecutor(4) as pool:
            threaded = list(pool.map(lambda image: segmenter.predict(image)[0], images))
    assert [item.error for item in streamed] == [None] * len(images)
    for index, (pair_labels, item, single_labels, other) in enumerate(zip(in_pairs, streamed, one_by_one, threaded)):
        assert np.array_equal(item.labels, pair_labels), (index, np.mean(item.labels != pair_labels))
        assert np.array_equal(other, single_labels), (index, np.mean(other != single_labels))


def test_overlay_kernel_blends_exactly_like_paddleseg_visualize(prepost, photos):
    from deploy_kit.images import PALETTE_BGR, overlay

    rng = np.random.default_rng(2)
    labels = [rng.integers(0, 21, image.shape[:2], dtype=np.uint8) for image in photos]
    for image, label, blended in zip(photos, labels, prepost.overlay(photos, labels)):
        np.testing.assert_array_equal(blended, overlay(image, PALETTE_BGR[label]))


def test_streamed_overlays_are_made_on_the_gpu(gpu, gpu_model, photos):
    """`stream(overlay=True)` on the GPU: each item carries its overlay, when nvImageCodec encodes it a
    Future of its JPEG (close to OpenCV's JPEG of the CPU blend), else the blended pixels (exactly the CPU
    blend). The photos go round four times in batches of 2, so the encoder's pooled buffers are reused
    while earlier batches still encode: an overlay read from a reused buffer would be another photo's."""
    import cv2

    from deploy_kit.backends.onnxruntime.cuda import cuda_provider_available
    from deploy_kit.images import PALETTE_BGR, overlay

    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a working CUDA provider")
    inputs = photos * 4
    with Segmenter(gpu_model, backend="onnxruntime-cuda", max_batch=2) as segmenter:
        items = list(segmenter.stream(inputs, workers=2, overlay=True))
        encoded_on_gpu = segmenter.pipeline.jpeg is not None
    assert len(items) == len(inputs)
    for image, item in zip(inputs, items):
        want = overlay(image, PALETTE_BGR[item.labels])
        assert item.image is None  # nothing kept for the CPU to blend
        if encoded_on_gpu:
            assert isinstance(item.overlay, Future)
            jpeg = item.overlay.result(timeout=60)
            assert jpeg[:2] == b"\xff\xd8"
            decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert decoded.shape == want.shape and cv2.PSNR(decoded, want) > 30
        else:
            np.testing.assert_array_equal(item.overlay, want)
