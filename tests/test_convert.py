"""`deploy-kit convert` on a real Paddle-exported PP-LiteSeg-T: paddle2onnx, onnxslim, ONNX Runtime,
Paddle Inference and real TensorRT-RTX engine builds, on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from deploy_kit.cli import main
from deploy_kit.paddleseg.deploy_config import load_deploy_config
from deploy_kit.paddleseg.reference import PaddleReference

from .conftest import require


def _convert(model: Path, out: Path, *extra: str) -> int:
    return main(["convert", str(model), "-o", str(out), *extra])


def _stage_lines(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    lines = capsys.readouterr().out.splitlines()
    return {ln.split()[0]: ln for ln in lines if ln.split() and ln.split()[0] in ("export", "optimize", "build")}


@pytest.fixture(scope="module")
def converted(paddle_model, tmp_path_factory):
    """output_op -> the convert output folder of that model (converted once per module)."""
    require("tensorrt_rtx")
    done: dict[str, Path] = {}

    def get(output_op: str) -> Path:
        if output_op not in done:
            out = tmp_path_factory.mktemp(f"build_{output_op}")
            assert _convert(paddle_model(output_op), out) == 0
            done[output_op] = out
        return done[output_op]

    return get


@pytest.mark.parametrize("output_op", ["argmax", "none"])
def test_optimized_onnx_matches_paddle_inference_on_photos(converted, paddle_model, photos, output_op):
    import onnxruntime as ort

    out = converted(output_op)
    assert next(o.version for o in onnx.load(str(out / "model.onnx")).opset_import if o.domain == "") == 11
    reference = PaddleReference(load_deploy_config(paddle_model(output_op)))
    session = ort.InferenceSession(str(out / "model.opt.onnx"), providers=["CPUExecutionProvider"])
    batch = np.concatenate([reference.preprocess(p)[0] for p in photos])
    want = reference.run(batch)
    got = session.run(None, {session.get_inputs()[0].name: batch})[0]
    assert got.shape == want.shape
    if output_op == "none":
        assert np.abs(got - want).max() <= 1e-4
        np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    else:
        assert got.dtype == want.dtype == np.int32
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("output_op", ["argmax", "none"])
def test_int64_initializers_are_narrowed(converted, output_op):
    exported = onnx.load(str(converted(output_op) / "model.onnx"))
    optimized = onnx.load(str(converted(output_op) / "model.opt.onnx"))
    onnx.checker.check_model(optimized, full_check=True)
    before = [i for i in exported.graph.initializer if i.data_type == onnx.TensorProto.INT64]
    constants = [n for n in exported.graph.node if n.op_type == "Constant"]
    assert before or constants, "the exported graph had no int64 constants to narrow"
    int32_max = np.iinfo(np.int32).max
    left = [i.name for i in optimized.graph.initializer if i.data_type == onnx.TensorProto.INT64
            and np.abs(onnx.numpy_helper.to_array(i)).max(initial=0) <= int32_max]
    assert left == []
    assert not any(n.op_type == "BatchNormalization" for n in optimized.graph.node)


def test_engine_metadata_describes_the_engine(converted, paddle_model):
    import tensorrt_rtx

    out = converted("none")
    meta = json.loads((out / "model.rtx.engine.json").read_text())
    from deploy_kit.fileio import sha256_file

    assert meta["flavor"] == "tensorrt_rtx" and meta["tensorrt_version"] == tensorrt_rtx.__version__
    assert meta["engine_sha256"] == sha256_file(out / "model.rtx.engine")
    assert meta["onnx_sha256"] == sha256_file(out / "model.opt.onnx")
    assert (out / "model.rtx.engine").stat().st_size > 1_000_000
    assert meta["profile"] == {"input": "x", "min": [1, 3, 256, 512], "opt": [1, 3, 256, 512], "max": [8, 3, 256, 512]}
    assert meta["inputs"][0]["name"] == "x" and meta["inputs"][0]["shape"][1:] == [3, 256, 512]
    assert meta["outputs"][0]["shape"][1] == 5 and meta["outputs"][0]["dtype"] == "float"
    assert meta["precision"] == "fp32" and set(meta["target_compute_capabilities"]) >= {"8.0", "8.6", "8.9"}
    yaml_transforms = list(load_deploy_config(paddle_model("none")).transforms)
    assert meta["preprocessing"]["transforms"] == yaml_transforms and not meta["preprocessing"]["resize_added"]
    assert meta["created"] and meta["builder_gpu"] is None


def test_second_run_skips_every_stage_and_options_redo_only_later_stages(paddle_model, tmp_path, capsys):
    require("tensorrt_rtx")
    model = paddle_model("argmax")
    assert _convert(model, tmp_path) == 0
    assert all("done" in line for line in _stage_lines(capsys).values())
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert _convert(model, tmp_path) == 0
    lines = _stage_lines(capsys)
    assert len(lines) == 3 and all("up to date" in line for line in lines.values())
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name != "convert.json"} == \
        {k: v for k, v in mtimes.items() if k != "convert.json"}
    assert _convert(model, tmp_path, "--batch", "1:2:4") == 0
    lines = _stage_lines(capsys)
    assert "up to date" in lines["export"] and "up to date" in lines["optimize"] and "done" in lines["build"]
    assert json.loads((tmp_path / "model.rtx.engine.json").read_text())["profile"]["max"][0] == 4
    assert _convert(model, tmp_path, "--batch", "1:2:4", "--force") == 0
    assert all("done" in line for line in _stage_lines(capsys).values())


def test_fp16_on_strongly_typed_tensorrt_builds_from_an_fp16_graph(paddle_model, tmp_path):
    require("tensorrt_rtx")
    import onnxruntime as ort

    assert _convert(paddle_model("none"), tmp_path, "--precision", "fp16") == 0
    half = onnx.load(str(tmp_path / "model.fp16.onnx"))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in half.graph.initializer)
    # FP16 input: the preprocessing kernel writes half precision, the engine reads half the bytes
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    meta = json.loads((tmp_path / "model.rtx.engine.json").read_text())
    assert meta["onnx_file"] == "model.fp16.onnx" and meta["precision"] == "fp16" and meta["strongly_typed"]
    assert meta["inputs"][0]["dtype"] == "half"
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 256, 512)).astype(np.float32)
    full = ort.InferenceSession(str(tmp_path / "model.opt.onnx")).run(None, {"x": x})[0]
    reduced = ort.InferenceSession(str(tmp_path / "model.fp16.onnx")).run(None, {"x": x.astype(np.float16)})[0]
    assert (full.argmax(1) == reduced.argmax(1)).mean() > 0.99


def test_without_tensorrt_convert_stops_after_onnx(paddle_model, tmp_path):
    from deploy_kit.backends.tensorrt.features import FLAVORS

    names = [name for modules in FLAVORS.values() for name in modules]
    hide = f"import sys; sys.modules.update(dict.fromkeys({names!r})); " \
           "from deploy_kit.cli import main; sys.exit(main(sys.argv[1:]))"
    run = lambda *extra: subprocess.run([sys.executable, "-c", hide, "convert", str(paddle_model("argmax")),  # noqa: E731
                                         "-o", str(tmp_path), *extra], capture_output=True, text=True)
    stopped = run()
    assert stopped.returncode == 3, stopped.stderr
    assert "pip install tensorrt" in stopped.stderr and "--onnx-only" in stopped.stderr
    assert (tmp_path / "model.opt.onnx").is_file() and not list(tmp_path.glob("*.engine"))
    only = run("--onnx-only")
    assert only.returncode == 0, only.stderr
    assert "build     stopped" in only.stdout
