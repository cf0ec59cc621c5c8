"""FP16 and INT8 graphs of the shipped demo model: accuracy against FP32 on fresh labelled scenes,
a reusable calibration cache, clear errors, the limit, and TensorRT-RTX engines from both graphs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy_kit.cli import main
from deploy_kit.synthetic import write_dataset

from .conftest import require


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("precision_data")
    calib_images, _ = write_dataset(root / "calib", seed=7, count=16)
    eval_images, eval_labels = write_dataset(root / "eval", seed=3, count=12)  # seed never trained on
    return {"calib": calib_images, "eval": eval_images, "labels": eval_labels}


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> Path:
    require("paddle", "paddle2onnx")
    from deploy_kit.paddleseg.demo import restore_default_model

    mp = pytest.MonkeyPatch()
    mp.setenv("DEPLOY_KIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield restore_default_model()
    mp.undo()


def _convert(model: Path, out: Path, data: dict[str, Path], *extra: str) -> int:
    return main(["convert", str(model), "-o", str(out), "--eval-images", str(data["eval"]),
                 "--eval-labels", str(data["labels"]), *extra])


@pytest.mark.parametrize("precision,limit", [("fp16", 0.3), ("int8", 1.5)])
def test_reduced_precision_within_limits_and_engine_builds(demo_model, data, tmp_path, precision, limit, caplog,
                                                           capsys):
    require("tensorrt_rtx")
    extra = ["--calib-images", str(data["calib"])] if precision == "int8" else []
    with caplog.at_level("WARNING"):
        assert _convert(demo_model, tmp_path, data, "--precision", precision, *extra) == 0
    assert "pre-processing" not in caplog.text and "Empty initializer" not in caplog.text  # no noise on a clean run
    assert "histogram" not in capsys.readouterr().out
    accuracy = json.loads((tmp_path / "accuracy.json").read_text())
    assert accuracy["measured_against"] == "labels" and accuracy["images"] == 12
    assert accuracy["verdict"] == "pass" and accuracy["miou_loss_points"] <= limit
    assert accuracy["max_miou_loss_points"] == limit and accuracy["pixel_agreement"] > 0.98
    meta = json.loads((tmp_path / "model.rtx.engine.json").read_text())
    assert meta["onnx_file"] == f"model.{precision}.onnx" and meta["precision"] == precision
    assert (tmp_path / "model.rtx.engine").stat().st_size > 1_000_000


def test_calibration_cache_is_reused(demo_model, data, tmp_path):
    args = ["--precision", "int8", "--calib-images", str(data["calib"]), "--onnx-only"]
    assert _convert(demo_model, tmp_path, data, *args) == 0
    first = json.loads((tmp_path / "convert.json").read_text())["stages"]["precision"]["details"]["calibration"]
    cache = tmp_path / first["cache"]
    assert not first["cache_reused"] and cache.is_file()
    stamp = cache.stat().st_mtime_ns
    assert _convert(demo_model, tmp_path, data, *args, "--force") == 0
    second = json.loads((tmp_path / "convert.json").read_text())["stages"]["precision"]["details"]["calibration"]
    assert second["cache_reused"] and second["cache"] == first["cache"] and cache.stat().st_mtime_ns == stamp


def test_calibration_folder_errors(demo_model, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["convert", str(demo_model), "-o", str(tmp_path / "out"), "--precision", "int8",
                 "--calib-images", str(empty), "--onnx-only"])
    err = capsys.readouterr().err
    assert code == 2 and "no usable calibration images" in err and str(empty) in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_text("not an image")
    code = main(["convert", str(demo_model), "-o", str(tmp_path / "out2"), "--precision", "int8",
                 "--calib-images", str(broken), "--onnx-only"])
    err = capsys.readouterr().err
    assert code == 2 and str(broken / "a.png") in err
    assert main(["convert", str(demo_model), "-o", str(tmp_path / "out3"), "--precision", "int8"]) == 2
    assert "--calib-images" in capsys.readouterr().err


def test_loss_above_the_limit_fails_unless_accepted(demo_model, data, tmp_path, capsys):
    args = ["convert", str(demo_model), "-o", str(tmp_path), "--precision", "int8", "--calib-images",
            str(data["calib"]), "--onnx-only", "--max-miou-loss", "0.0001"]  # compared with FP32 labels
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "loses" in err and "mIoU points" in err and "--accept-accuracy-loss" in err
    assert json.loads((tmp_path / "accuracy.json").read_text())["verdict"] == "fail"
    assert main(args + ["--accept-accuracy-loss"]) == 0
    assert json.loads((tmp_path / "accuracy.json").read_text())["verdict"] == "fail"
