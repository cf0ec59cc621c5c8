"""Bad input to `convert`: one line naming the file and the fix, exit code 2, and nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from deploy_kit.cli import main
from deploy_kit.backends.tensorrt.features import probe_tensorrt
from deploy_kit.errors import BuildError
from deploy_kit.backends.tensorrt.build import BuildSpec, build_engine

from .conftest import require


def _fails(capsys, model: Path, out: Path, *extra: str) -> str:
    code = main(["convert", str(model), "-o", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def _left_behind(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def test_missing_folder(capsys, tmp_path):
    err = _fails(capsys, tmp_path / "nope", tmp_path / "out")
    assert str(tmp_path / "nope") in err and "tools/export.py" in err
    assert _left_behind(tmp_path / "out") == []


def test_missing_model_file(capsys, model_copy, tmp_path):
    model = model_copy()
    (model / "model.json").unlink()
    err = _fails(capsys, model, tmp_path / "out")
    assert "model file not found" in err and "model.json" in err and str(model) in err
    assert _left_behind(tmp_path / "out") == []


def test_missing_params_file(capsys, model_copy, tmp_path):
    model = model_copy()
    (model / "model.pdiparams").unlink()
    err = _fails(capsys, model, tmp_path / "out")
    assert "model.pdiparams" in err and "missing" in err


def test_corrupt_pdiparams(capsys, model_copy, tmp_path):
    model = model_copy()
    params = model / "model.pdiparams"
    params.write_bytes(params.read_bytes()[: params.stat().st_size // 2])
    err = _fails(capsys, model, tmp_path / "out")
    assert str(params) in err and "truncated" in err
    assert _left_behind(tmp_path / "out") == []


def test_unreadable_deploy_yaml(capsys, model_copy, tmp_path):
    model = model_copy()
    (model / "deploy.yaml").write_text("Deploy: [unclosed\n  transforms: {")
    err = _fails(capsys, model, tmp_path / "out")
    assert str(model / "deploy.yaml") in err and "not valid YAML" in err


def test_model_paddle2onnx_cannot_convert(capsys, model_copy, tmp_path):
    require("paddle2onnx")
    model = model_copy()
    program = (model / "model.json").read_text()
    assert '"#":"1.relu"' in program  # PIR's JSON names ops by dialect id and name
    (model / "model.json").write_text(program.replace('"#":"1.relu"', '"#":"1.relu_not_an_op"'))
    err = _fails(capsys, model, tmp_path / "out")
    assert str(model / "model.json") in err and "paddle2onnx could not convert" in err
    assert "unsupported operators" in err and "\x1b" not in err and "named above" not in err
    assert not (tmp_path / "out").exists()  # no empty output folder left behind
    (model / "model.json").write_text(program[: len(program) // 2])
    err = _fails(capsys, model, tmp_path / "out")
    assert "not valid JSON" in err and str(model / "model.json") in err


def test_dynamic_shape_without_resize_needs_input_shape(capsys, model_copy, tmp_path):
    model = model_copy()
    deploy = model / "deploy.yaml"
    deploy.write_text(deploy.read_text().replace("- 256\n  - 512", "- null\n  - null").replace(
        "- target_size:\n    - 512\n    - 256\n    type: Resize\n", ""))
    assert "Resize" not in deploy.read_text()
    err = _fails(capsys, model, tmp_path / "out")
    assert "--input-shape" in err and str(deploy) in err
    err = _fails(capsys, model, tmp_path / "out", "--input-shape", "1,3,300,500")
    assert "not a multiple of 128" in err and "1,3,384,512" in err
    err = _fails(capsys, model, tmp_path / "out", "--input-shape", "1,3,256,512")
    assert "tools/export.py --input_shape 1 3 256 512" in err  # paddle2onnx needs a fixed-shape export
    assert _left_behind(tmp_path / "out") == []


@pytest.mark.parametrize("flag,value,needle", [("--batch", "4:2:1", "MIN:OPT:MAX"),
                                               ("--input-shape", "1,4,256,512", "N,C,H,W"),
                                               ("--workspace", "lots", "2GiB"),
                                               ("--target-sm", "orin", "8.7,8.6")])
def test_bad_options(capsys, paddle_model, tmp_path, flag, value, needle):
    err = _fails(capsys, paddle_model(), tmp_path / "out", flag, value)
    assert needle in err


def _unparsable_onnx(path: Path) -> Path:
    """A valid ONNX graph with an op no TensorRT parser has an importer for."""
    node = helper.make_node("Det", ["a"], ["d"], name="determinant_node")
    out = helper.make_node("Add", ["x", "d"], ["y"], name="add_node")
    graph = helper.make_graph([node, out], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [onnx.numpy_helper.from_array(np.eye(4, dtype=np.float32)[None, None], "a")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))
    return path


def test_onnx_tensorrt_cannot_parse_names_the_node(tmp_path):
    require("tensorrt_rtx")
    features = probe_tensorrt()
    assert features is not None
    request = BuildSpec(_unparsable_onnx(tmp_path / "bad.onnx"), ((1, 3, 4, 4),) * 3)
    with pytest.raises(BuildError) as caught:
        build_engine(request, features, tmp_path / "model.engine")
    message = caught.value.one_line()
    assert str(tmp_path / "bad.onnx") in message and "determinant_node" in message and "Det" in message
    assert _left_behind(tmp_path) == ["bad.onnx"]
    assert caught.value.exit_code == 2


def test_damaged_report_only_means_stages_rerun(paddle_model, tmp_path, capsys):
    assert main(["convert", str(paddle_model()), "-o", str(tmp_path), "--onnx-only"]) == 0
    (tmp_path / "convert.json").write_text("{not json")
    assert main(["convert", str(paddle_model()), "-o", str(tmp_path), "--onnx-only"]) == 0
    assert json.loads((tmp_path / "convert.json").read_text())["stages"]["export"]["status"] == "done"
