"""Dynamic-shape models and sliding windows on the GPU (ONNX Runtime CUDA), against the CPU path.

The models: `convert --onnx-only` outputs of dynamic-shape exports (Normalize only), one folder each
under DEPLOY_KIT_GPU_ZOO (the device machine has no Paddle: `benchmarks/make_model.py --dynamic` makes
them where Paddle is), named unet, bisenetv2, segformer_b0 and ocrnet_hrnet_w18.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy_kit import Segmenter
from deploy_kit.paddleseg.slide import SlideWindow

AGREEMENT = 0.9999
ZOO = ("unet", "bisenetv2", "segformer_b0", "ocrnet_hrnet_w18")


@pytest.fixture(scope="module")
def cuda(gpu):
    from deploy_kit.backends.onnxruntime.cuda import cuda_provider_available

    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a working CUDA provider")


def _zoo_model(name: str) -> Path:
    folder = os.environ.get("DEPLOY_KIT_GPU_ZOO")
    if not folder or not (Path(folder) / name).is_dir():
        pytest.skip(f"needs DEPLOY_KIT_GPU_ZOO/{name}: benchmarks/make_model.py --arch {name} --dynamic")
    return Path(folder) / name


@pytest.fixture(scope="module")
def sized_photos(photos) -> list[np.ndarray]:
    """The test photos (five sizes, most not multiples of 32) and a 1024x2048 Cityscapes-size frame."""
    return [*photos, cv2.resize(photos[3], (2048, 1024), interpolation=cv2.INTER_LINEAR)]


def _agreement(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
    assert [a.shape for a in ours] == [b.shape for b in theirs]
    return min(float(np.mean(a == b)) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("name", ZOO)
def test_dynamic_model_on_cuda_agrees_with_cpu_path(cuda, name, sized_photos):
    model = _zoo_model(name)
    images = sized_photos + sized_photos[::-1]  # every size twice, so repeated sizes replay CUDA graphs
    with Segmenter(model, backend="onnxruntime-cuda", max_batch=2) as on_gpu:
        assert on_gpu.backend == "onnxruntime-cuda" and on_gpu.pipeline is not None
        gpu_labels = on_gpu.predict(images)
    with Segmenter(model, backend="onnxruntime-cpu") as on_cpu:
        cpu_labels = on_cpu.predict(images)
    assert _agreement(gpu_labels, cpu_labels) >= AGREEMENT


def test_mixed_sizes_stream_in_input_order(cuda, sized_photos):
    model = _zoo_model("bisenetv2")
    order = [0, 0, 1, 5, 0, 3, 3, 2, 4, 1, 5, 5, 0]
    images = [sized_photos[i] for i in order]
    with Segmenter(model, backend="onnxruntime-cuda", max_batch=4) as segmenter:
        one_by_one = [segmenter.predict(image)[0] for image in images]
        streamed = list(segmenter.stream(images, workers=4))
    assert [item.error for item in streamed] == [None] * len(images)
    assert all(item.source is image for item, image in zip(streamed, images))
    assert _agreement([item.labels for item in streamed], one_by_one) >= AGREEMENT


def _gpu_used_bytes() -> int:
    from cuda.bindings import driver

    from deploy_kit.cuda import check_cuda

    free, total = check_cuda(driver.cuMemGetInfo())
    return int(total - free)


def test_gpu_memory_stays_bounded_over_mixed_sizes(cuda, photos):
    """Buffers grow to the largest size seen and are reused: after 200 images of mixed sizes the GPU holds
    no more than after the first 20 and one batch of the largest size, but for the code of kernels that
    new sizes use for the first time (CUDA loads modules lazily: 2 MiB measured on the H200)."""
    model = _zoo_model("bisenetv2")
    rng = np.random.default_rng(5)
    sizes = [(int(rng.integers(128, 1024)), int(rng.integers(128, 2048))) for _ in range(200)]
    largest = (1024, 2048)
    images = [cv2.resize(photos[i % len(photos)], (w, h)) for i, (h, w) in enumerate(sizes)]
    with Segmenter(model, backend="onnxruntime-cuda", max_batch=4) as segmenter:
        for item in segmenter.stream(images[:20], workers=4):
            assert item.error is None
        segmenter.predict([cv2.resize(photos[0], largest[::-1])] * 4)
        after_warmup = _gpu_used_bytes()
        for item in segmenter.stream(images, workers=4):
            assert item.error is None
        after_all = _gpu_used_bytes()
    assert after_all <= after_warmup + (16 << 20), (after_warmup, after_all)


@pytest.mark.parametrize("strip_bytes", [None, 1])
def test_sliding_window_on_gpu_agrees_with_cpu_path(cuda, photos, strip_bytes):
    """PaddleSeg's crops summed on the GPU (one strip, or a crop-high strip at a time) give the CPU twin's
    labels, on an image larger than the crop both ways."""
    model = _zoo_model("bisenetv2")
    image = cv2.resize(photos[3], (1300, 900))
    crop, stride = (400, 300), (300, 200)
    with Segmenter(model, backend="onnxruntime-cuda", max_batch=4, crop_size=crop, stride=stride) as on_gpu:
        if strip_bytes is not None:
            on_gpu.pipeline.window = SlideWindow(crop, stride, strip_bytes)
        gpu_labels = on_gpu.predict([image, photos[1]])
    with Segmenter(model, backend="onnxruntime-cpu", crop_size=crop, stride=stride) as on_cpu:
        cpu_labels = on_cpu.predict([image, photos[1]])
    assert _agreement(gpu_labels, cpu_labels) >= AGREEMENT


def test_sliding_window_with_a_fixed_size_model(cuda, gpu_model, photos):
    """A fixed-size model slides its own input size; overlays come from the slid labels."""
    from deploy_kit.artifact import Artifact

    height, width = Artifact.open(gpu_model).preprocessing["model_input_hw"]
    image = cv2.resize(photos[3], (width * 2 + 37, height * 2 + 11))
    with Segmenter(gpu_model, backend="onnxruntime-cuda", crop_size=(width, height)) as on_gpu:
        items = list(on_gpu.stream([image], overlay=True))
    with Segmenter(gpu_model, backend="onnxruntime-cpu", crop_size=(width, height)) as on_cpu:
        cpu_labels = on_cpu.predict(image)
    assert items[0].error is None and items[0].overlay is not None
    assert _agreement([items[0].labels], cpu_labels) >= AGREEMENT


def test_huge_image_slides_within_bounded_memory(cuda):
    """A 10000x10000 image (100 Mpx, above `infer`'s default pixel limit, through the API) slides with the
    sums of one strip at a time: beyond a 3000x3000 image's memory it needs only its own pixels and labels
    and at most the strip cap (1 GiB), not all its sums (5 x 4 bytes x 10^8 = 2 GB for 4 classes)."""
    model = _zoo_model("bisenetv2")
    rng = np.random.default_rng(9)
    tile = rng.integers(0, 256, (625, 625, 3), dtype=np.uint8)
    huge = np.tile(tile, (16, 16, 1))
    with Segmenter(model, backend="onnxruntime-cuda", max_batch=8, crop_size=(1024, 1024),
                   stride=(768, 768)) as segmenter:
        # The crops' shape repeats, so ONNX Runtime would make its static CUDA-graph session (up to two,
        # each with its own activations) during the large image: measured apart from the sliding here.
        segmenter.pipeline.executor.static_after = 0
        assert segmenter.predict(huge[:3000, :3000])[0].shape == (3000, 3000)
        before = _gpu_used_bytes()
        labels = segmenter.predict(huge)[0]
        grown = _gpu_used_bytes() - before
    assert labels.shape == huge.shape[:2]
    assert grown <= huge.nbytes + labels.nbytes + (1 << 30) + (64 << 20), grown
