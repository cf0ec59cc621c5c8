"""The shipped demo model: it restores exactly, segments fresh synthetic scenes above the mIoU bar through
ONNX Runtime after `convert`, and `eval` agrees with Paddle Inference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deploy_kit.cli import main
from deploy_kit.errors import ConfigError
from deploy_kit.evaluate import Confusion
from deploy_kit.fileio import sha256_file
from deploy_kit.paddleseg.demo import DEFAULT_MODEL_DIR, MANIFEST, PACKED_PARAMS, restore_default_model
from deploy_kit.synthetic import CLASS_NAMES, generate_scene

from .conftest import require

MIOU_BAR = 0.90


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def default_build(cache, tmp_path_factory):
    """`deploy-kit convert` with no model: the shipped one, restored into a fresh cache."""
    require("paddle", "paddle2onnx")
    mp = pytest.MonkeyPatch()
    mp.setenv("DEPLOY_KIT_CACHE", str(cache))
    out = tmp_path_factory.mktemp("default_build")
    assert main(["convert", "-o", str(out), "--onnx-only"]) == 0
    yield out
    mp.undo()


def test_restore_matches_checksum_and_rejects_damage(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOY_KIT_CACHE", str(tmp_path / "cache"))
    restored = restore_default_model()
    manifest = json.loads((DEFAULT_MODEL_DIR / MANIFEST).read_text())
    assert sha256_file(restored / "model.pdiparams") == manifest["pdiparams_sha256"]
    assert (restored / "deploy.yaml").is_file() and (restored / "model.json").is_file()
    assert restore_default_model() == restored  # second use: from the cache
    damaged = tmp_path / "damaged"
    shutil.copytree(DEFAULT_MODEL_DIR, damaged)
    packed = np.load(damaged / PACKED_PARAMS)
    arrays = {k: packed[k] for k in packed.files}
    first = sorted(k for k in arrays if k.startswith("d"))[0]
    arrays[first] = arrays[first] + np.float16(0.5)
    np.savez_compressed(damaged / PACKED_PARAMS, **arrays)
    monkeypatch.setenv("DEPLOY_KIT_CACHE", str(tmp_path / "cache2"))
    with pytest.raises(ConfigError, match="checksum"):
        restore_default_model(damaged)


def test_generator_is_deterministic_with_all_classes():
    a_image, a_label = generate_scene(3, 0)
    b_image, b_label = generate_scene(3, 0)
    assert np.array_equal(a_image, b_image) and np.array_equal(a_label, b_label)
    assert not np.array_equal(generate_scene(1, 0)[0], a_image)
    present = set()
    for index in range(20):
        present |= set(np.unique(generate_scene(3, index)[1]).tolist())
    assert present == set(range(len(CLASS_NAMES))) and len(CLASS_NAMES) >= 5


def test_default_model_reaches_the_miou_bar_on_fresh_scenes(default_build, tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert main(["eval", "--synthetic", "100", "--seed", "3", "--model", str(default_build),
                 "--backend", "onnxruntime-cpu", "-o", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["images"] == 100 and result["backend"] == "onnxruntime-cpu"
    assert result["miou"] >= MIOU_BAR, result
    assert len(result["class_iou"]) == len(CLASS_NAMES)


def test_eval_agrees_with_paddle_inference(default_build, tmp_path):
    require("paddleseg")
    report = tmp_path / "eval.json"
    assert main(["eval", "--synthetic", "12", "--seed", "5", "--model", str(default_build),
                 "--backend", "onnxruntime-cpu", "--reference", "paddle", "-o", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["paddle_pixel_agreement"] == 1.0
    assert result["paddle_miou"] == pytest.approx(result["miou"], abs=1e-12)


def test_eval_on_folders_with_ignore_index(default_build, tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    from deploy_kit.synthetic import write_dataset

    write_dataset(tmp_path, seed=6, count=3)
    import cv2

    label = cv2.imread(str(labels / "00000.png"), cv2.IMREAD_GRAYSCALE)
    label[:40] = 255  # a band PaddleSeg would ignore
    cv2.imwrite(str(labels / "00000.png"), label)
    report = tmp_path / "eval.json"
    assert main(["eval", str(images), str(labels), "--model", str(default_build), "--backend", "onnxruntime-cpu",
                 "-o", str(report)]) == 0
    assert json.loads(report.read_text())["images"] == 3


def test_confusion_follows_paddleseg_metric_rules():
    """PaddleSeg's calculate_area/mean_iou (2.8 fails on Paddle 3's 0-d tensors, so worked by hand):
    ignore-index pixels drop out, a class absent from both maps counts as IoU 0 in the mean."""
    pred = np.array([[0, 0, 1], [1, 2, 2]])
    label = np.array([[0, 1, 1], [255, 2, 0]])
    confusion = Confusion(4)
    confusion.add(pred, label)
    # class 0: inter 1, union 3; class 1: inter 1, union 2 (pred 1 at an ignored pixel drops out);
    # class 2: inter 1, union 2; class 3: absent -> 0.
    np.testing.assert_allclose(confusion.class_iou(), [1 / 3, 1 / 2, 1 / 2, 0.0])
    assert confusion.mean_iou() == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 4)
    assert confusion.pixel_accuracy() == pytest.approx(3 / 5)


def test_eval_without_o_prints_and_writes_nothing(default_build, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--synthetic", "2", "--seed", "1", "--model", str(default_build),
                 "--backend", "onnxruntime-cpu"]) == 0
    assert "mIoU" in capsys.readouterr().out and list(tmp_path.iterdir()) == []


def test_segmenter_without_a_model_uses_the_shipped_one(tmp_path, monkeypatch):
    """As the CLI does; one image in, a list of one H x W map out."""
    from deploy_kit import Segmenter

    monkeypatch.setenv("DEPLOY_KIT_CACHE", str(tmp_path / "cache"))
    image, _ = generate_scene(4, 1)
    with Segmenter(backend="onnxruntime-cpu") as segmenter:
        labels = segmenter.predict(image)
    assert isinstance(labels, list) and len(labels) == 1
    assert labels[0].shape == image.shape[:2] and labels[0].dtype == np.uint8
