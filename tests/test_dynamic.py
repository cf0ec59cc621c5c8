"""Dynamic-shape models and sliding windows on the CPU: images at their own size in batches of one size,
input order kept, profiles from a folder of images, crops accumulated in strips, and options that cannot
work refused with one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from deploy_kit import Segmenter
from deploy_kit.backends.onnxruntime.cpu import OnnxRuntimeCpuExecutor
from deploy_kit.cli import main
from deploy_kit.paddleseg.preprocess import PreprocessSpec, preprocess_cpu
from deploy_kit.paddleseg.slide import SlideWindow, crop_boxes, slide_cpu, strips

from .conftest import PHOTOS, require


@pytest.fixture(scope="module")
def dynamic_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BiSeNetV2 exported as PaddleSeg's tools/export.py does by default: [-1, 3, -1, -1], Normalize only."""
    require("paddle", "paddleseg", "paddle2onnx")
    import paddle

    from deploy_kit.paddleseg.export import build_architecture, export_inference_model

    paddle.seed(3)
    return export_inference_model(build_architecture("bisenetv2", 3), tmp_path_factory.mktemp("bisenetv2"),
                                  [None, 3, None, None], [{"type": "Normalize"}], output_op="none")


@pytest.fixture(scope="module")
def dynamic_model(dynamic_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bisenetv2_onnx")
    assert main(["convert", str(dynamic_export), "-o", str(out), "--onnx-only"]) == 0
    return out


def _mixed_sizes(photos: list[np.ndarray]) -> list[np.ndarray]:
    """Runs of equal sizes broken by other sizes: 512x512 twice, 300x451, 512x512, 432x640 twice, ..."""
    order = [0, 0, 1, 0, 3, 3, 2, 4, 1, 1, 0]
    return [photos[i] for i in order]


def test_dynamic_model_streams_mixed_sizes_in_input_order(dynamic_model, photos):
    images = _mixed_sizes(photos)
    with Segmenter(dynamic_model, backend="onnxruntime-cpu", max_batch=4) as segmenter:
        assert segmenter.spec.dynamic_hw and segmenter.spec.gpu_ready  # Normalize only: the GPU kernel runs it
        one_by_one = [segmenter.predict(image)[0] for image in images]
        batched = segmenter.predict(images)
        streamed = list(segmenter.stream(images, workers=2))
    assert [item.source is image for item, image in zip(streamed, images)] == [True] * len(images)
    for image, single, in_batch, item in zip(images, one_by_one, batched, streamed):
        assert single.shape == image.shape[:2]
        np.testing.assert_array_equal(in_batch, single)
        np.testing.assert_array_equal(item.labels, single)


def test_dynamic_model_input_is_the_image_at_its_own_size(dynamic_model, photos):
    """No padding: PaddleSeg's deploy pipeline feeds the normalized image as it is."""
    with Segmenter(dynamic_model, backend="onnxruntime-cpu") as segmenter:
        tensor = preprocess_cpu(photos[1], segmenter.spec)
    assert tensor.shape == (3, *photos[1].shape[:2]) and photos[1].shape[0] % 32


def test_shapes_from_sets_the_profile_from_image_headers(dynamic_export, tmp_path, photos, capsys):
    require("tensorrt_rtx")
    folder = tmp_path / "typical"
    folder.mkdir()
    for index, (h, w) in enumerate([(300, 451), (540, 960), (540, 960), (1024, 2048)]):
        cv2.imwrite(str(folder / f"{index}.jpg"), cv2.resize(photos[index % len(photos)], (w, h)))
    out = tmp_path / "build"
    assert main(["convert", str(dynamic_export), "-o", str(out), "--shapes-from", str(folder)]) == 0
    assert f"--shapes-from {folder} (4 images)" in capsys.readouterr().out
    report = json.loads((out / "convert.json").read_text())
    meta = json.loads((out / "model.rtx.engine.json").read_text())
    assert report["input"]["hw_min"] == [300, 451] and report["input"]["hw_max"] == [1024, 2048]
    assert (report["input"]["height"], report["input"]["width"]) == (540, 960)  # the most common size
    assert meta["profile"]["min"][2:] == [300, 451] and meta["profile"]["opt"][2:] == [540, 960]
    assert meta["profile"]["max"][2:] == [1024, 2048]
    assert report["preprocessing"]["hw_min"] == [300, 451]


def test_named_gpu_backend_without_a_gpu_is_exit_2_in_one_line(dynamic_model, tmp_path, capsys):
    code = main(["infer", str(PHOTOS[0]), "--model", str(dynamic_model), "-o", str(tmp_path / "out"),
                 "--backend", "onnxruntime-cuda"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "onnxruntime-cuda" in err and "Hint:" in err
    assert not list((tmp_path / "out").glob("*.png"))


def test_crop_size_on_an_argmax_model_says_to_re_export(onnx_only, tmp_path, capsys):
    code = main(["infer", str(PHOTOS[0]), "--model", str(onnx_only("argmax")), "-o", str(tmp_path / "out"),
                 "--backend", "onnxruntime-cpu", "--crop-size", "512,256"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--output_op none" in err, err


def test_crop_size_must_be_a_fixed_models_input(onnx_model, tmp_path, capsys):
    code = main(["infer", str(PHOTOS[0]), "--model", str(onnx_model), "-o", str(tmp_path / "out"),
                 "--backend", "onnxruntime-cpu", "--crop-size", "300,300"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--crop-size 512,256" in err, err


def test_sliding_window_cli_writes_labels_at_the_image_size(onnx_model, tmp_path):
    """A fixed-size model slides its own input size over an image larger than it both ways."""
    big = tmp_path / "big.jpg"
    cv2.imwrite(str(big), cv2.resize(cv2.imread(str(PHOTOS[3])), (1100, 700)))
    assert main(["infer", str(big), "--model", str(onnx_model), "-o", str(tmp_path / "out"),
                 "--backend", "onnxruntime-cpu", "--crop-size", "512,256", "--stride", "400,200"]) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "big.png")).shape == (700, 1100)


def test_slide_crops_are_placed_as_paddleseg_places_them():
    window = SlideWindow((512, 256), (341, 170))
    boxes = crop_boxes(700, 1100, window)
    assert len(boxes) == 4 * 3  # rows: ceil((700-256)/170)+1 = 4; cols: ceil((1100-512)/341)+1 = 3
    assert {(b.y2 - b.y1, b.x2 - b.x1) for b in boxes} == {(256, 512)}
    assert max(b.y2 for b in boxes) == 700 and max(b.x2 for b in boxes) == 1100
    assert crop_boxes(100, 200, window) == [crop_boxes(100, 200, window)[0]]  # smaller than the crop: one


def test_summing_in_strips_gives_the_labels_of_one_strip(onnx_model, photos):
    """Bounded memory: the sums of a 700x1100 image kept a crop-high strip at a time (crops that reach into
    two strips run for each) give exactly the labels of the whole image summed at once."""
    executor = OnnxRuntimeCpuExecutor(onnx_model / "model.opt.onnx")
    with Segmenter(onnx_model, backend="onnxruntime-cpu", crop_size=(512, 256)) as segmenter:
        spec: PreprocessSpec = segmenter.spec
    tensor = preprocess_cpu(cv2.resize(photos[3], (1100, 700)), spec)
    whole = SlideWindow((512, 256), (341, 170))
    narrow = SlideWindow((512, 256), (341, 170), strip_bytes=1)
    classes = executor.output.shape[1]
    assert len(strips(700, 1100, classes, whole)) == 1 and len(strips(700, 1100, classes, narrow)) == 3
    np.testing.assert_array_equal(slide_cpu(tensor, narrow, classes, executor.run, 4),
                                  slide_cpu(tensor, whole, classes, executor.run, 4))
