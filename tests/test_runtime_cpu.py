"""The ONNX Runtime CPU path of the runtime against PaddleSeg's own pipeline (deploy.yaml transforms +
Paddle Inference + reverse_transform), on real photos: identical label maps in FP32."""

from __future__ import annotations

import numpy as np
import pytest

from deploy_kit.cli import main
from deploy_kit.paddleseg.deploy_config import load_deploy_config
from deploy_kit.paddleseg.reference import PaddleReference
from deploy_kit.paddleseg.preprocess import PreprocessSpec, preprocess_cpu
from deploy_kit import Segmenter


@pytest.mark.parametrize("output_op", ["none", "argmax"])
def test_cpu_path_equals_paddleseg_pipeline(onnx_only, paddle_model, photos, output_op):
    reference = PaddleReference(load_deploy_config(paddle_model(output_op)))
    with Segmenter(onnx_only(output_op), backend="onnxruntime-cpu", max_batch=2) as segmenter:
        assert segmenter.backend == "onnxruntime-cpu"
        ours = segmenter.predict(photos)
    for photo, labels in zip(photos, ours):
        want = reference.segment(photo)
        assert labels.shape == photo.shape[:2] and labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, want)


def test_cpu_preprocessing_is_paddleseg_preprocessing(onnx_only, paddle_model, photos):
    reference = PaddleReference(load_deploy_config(paddle_model("none")))
    segmenter = Segmenter(onnx_only("none"), backend="onnxruntime-cpu")
    for photo in photos:
        np.testing.assert_array_equal(preprocess_cpu(photo, segmenter.spec), reference.preprocess(photo)[0][0])


def test_paddleseg_folder_is_converted_on_the_fly(paddle_model, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOY_KIT_CACHE", str(tmp_path / "cache"))
    with Segmenter(paddle_model("argmax"), backend="onnxruntime-cpu") as segmenter:
        labels = segmenter.predict(photos[:1])
    assert labels[0].shape == photos[0].shape[:2]
    assert list((tmp_path / "cache" / "converted").glob("*/model.opt.onnx"))


def test_metadata_adds_resize_for_fixed_shape_model_without_one(model_copy, tmp_path, photos):
    model = model_copy("none")
    deploy = model / "deploy.yaml"
    deploy.write_text(deploy.read_text().replace("- target_size:\n    - 512\n    - 256\n    type: Resize\n", ""))
    assert main(["convert", str(model), "-o", str(tmp_path), "--onnx-only"]) == 0
    with Segmenter(tmp_path, backend="onnxruntime-cpu") as segmenter:
        assert segmenter.model.preprocessing["resize_added"]
        assert segmenter.spec == PreprocessSpec.from_metadata(segmenter.model.preprocessing)
        labels = segmenter.predict(photos[:2])  # any image size works
    assert [l.shape for l in labels] == [p.shape[:2] for p in photos[:2]]


def _preprocessing(*transforms):
    return {"transforms": list(transforms), "model_input_hw": [256, 512], "to_rgb": True}


def test_transforms_without_kernels_run_on_cpu_and_unknown_ones_are_named(caplog):
    from deploy_kit.errors import ConfigError

    resize = {"type": "Resize", "target_size": [512, 256]}
    assert PreprocessSpec.from_metadata(_preprocessing(resize, {"type": "Normalize"})).gpu_ready
    nearest = PreprocessSpec.from_metadata(_preprocessing(dict(resize, interp="NEAREST"), {"type": "Normalize"}))
    assert not nearest.gpu_ready
    pytest.importorskip("paddleseg", reason="needs paddleseg to run transforms deploy-kit has no kernel for")
    with caplog.at_level("WARNING"):
        padded = PreprocessSpec.from_metadata(_preprocessing({"type": "ResizeByShort", "short_size": 256}, resize,
                                                             {"type": "Normalize"}))
    assert not padded.gpu_ready and "ResizeByShort" in caplog.text
    image = np.random.default_rng(0).integers(0, 256, (300, 700, 3), dtype=np.uint8)
    assert preprocess_cpu(image, padded).shape == (3, 256, 512)
    with pytest.raises(ConfigError, match="MakeItPrettier"):
        PreprocessSpec.from_metadata(_preprocessing({"type": "MakeItPrettier"}, resize))
