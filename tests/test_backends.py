"""The backend registry on real convert outputs and real TensorRT-RTX engines: one list of backends,
verdicts that say why, the chosen --device reaching every check and rebuild, one sidecar writer, and a
TensorRT executor that releases what it holds deterministically.

The GPUs are injected as plain facts (`GpuInfo`): TensorRT-RTX builds for any compute capability it
lists without that GPU, so every engine here is real; only running one needs the hardware."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from deploy_kit.artifact import PRECISIONS, Artifact, sidecar_path
from deploy_kit.backends import registry
from deploy_kit.backends.tensorrt.executor import TensorRTExecutor
from deploy_kit.backends.tensorrt.features import probe_flavor
from deploy_kit.cli import build_parser, main
from deploy_kit.convert.pipeline import rebuild_engine
from deploy_kit.errors import EngineCompatibilityError
from deploy_kit.machine import GpuInfo

from .conftest import require

A6000 = GpuInfo(0, "NVIDIA RTX A6000", "8.6", 40 << 30, 48 << 30)
L4 = GpuInfo(1, "NVIDIA L4", "8.9", 20 << 30, 24 << 30)


def _option_choices(command: str, option: str) -> tuple[str, ...]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return tuple(next(a for a in commands[command]._actions if option in a.option_strings).choices)


@pytest.mark.parametrize("command", ["infer", "eval", "benchmark"])
def test_cli_backend_choices_are_the_registry(command):
    assert _option_choices(command, "--backend") == registry.names()
    assert registry.names() == ("auto", "tensorrt", "tensorrt-rtx", "onnxruntime-cuda", "onnxruntime-cpu")


@pytest.mark.parametrize("command", ["convert", "benchmark"])
def test_cli_precision_choices_are_the_artifact_format(command):
    assert _option_choices(command, "--precision") == PRECISIONS


@pytest.fixture(scope="module")
def rtx_model(paddle_model, tmp_path_factory) -> Path:
    """A convert output with a TensorRT-RTX engine for every Ampere-or-newer GPU (built without one)."""
    require("tensorrt_rtx")
    out = tmp_path_factory.mktemp("rtx_model")
    assert main(["convert", str(paddle_model("none")), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def rtx_for_sm86(rtx_model, tmp_path_factory) -> Path:
    """The same convert output whose engine was built for SM 8.6 only (as on an RTX A6000)."""
    folder = tmp_path_factory.mktemp("rtx_sm86") / "model"
    folder.mkdir()
    for name in ("convert.json", "model.onnx", "model.opt.onnx"):
        (folder / name).write_bytes((rtx_model / name).read_bytes())
    features = probe_flavor("tensorrt_rtx")
    assert features is not None
    rebuild_engine(Artifact.open(folder), features, A6000, out_dir=folder)
    return folder


def test_the_chosen_device_reaches_the_engine_check_and_the_rebuild(rtx_for_sm86, tmp_path):
    artifact = Artifact.open(rtx_for_sm86)
    rtx = registry.get("tensorrt-rtx")
    on_a6000 = rtx.check(artifact, (A6000, L4), device=0)
    assert on_a6000.usable and not on_a6000.rebuild and on_a6000.engine == rtx_for_sm86 / "model.rtx.engine"
    assert "NVIDIA RTX A6000" in on_a6000.reason
    on_l4 = rtx.check(artifact, (A6000, L4), device=1)
    assert on_l4.usable and on_l4.rebuild
    assert "built for SM 8.6, this GPU is SM 8.9" in on_l4.reason and "NVIDIA L4" in on_l4.reason
    assert rtx.features is not None
    engine = rebuild_engine(artifact, rtx.features, L4, out_dir=tmp_path)
    meta = json.loads(sidecar_path(engine).read_text())
    assert meta["target_compute_capabilities"] == ["8.9"]
    assert meta["builder_gpu"] == {"index": 1, "name": "NVIDIA L4", "compute_capability": "8.9"}
    assert rtx.check(Artifact.open(rtx_for_sm86), (A6000, L4), device=1).rebuild  # the source is untouched


def test_rebuilt_and_converted_engines_have_the_same_sidecar(rtx_model, rtx_for_sm86):
    converted = json.loads(sidecar_path(rtx_model / "model.rtx.engine").read_text())
    rebuilt = json.loads(sidecar_path(rtx_for_sm86 / "model.rtx.engine").read_text())
    assert converted.keys() == rebuilt.keys()
    for key in ("preprocessing", "deploy_yaml", "onnx_opset", "profile", "inputs", "outputs", "flavor"):
        assert converted[key] == rebuilt[key], key
    assert converted["target_compute_capabilities"] != rebuilt["target_compute_capabilities"] == ["8.6"]


def test_registry_passes_over_backends_and_says_why(rtx_model):
    artifact = Artifact.open(rtx_model)
    on_cpu = registry.choose(artifact, "auto", (), device=0)
    assert on_cpu.backend.name == "onnxruntime-cpu"
    assert on_cpu.reason.endswith("no CUDA GPU found; ONNX Runtime on the CPU")
    assert "TensorRT-RTX is installed, but there is no CUDA GPU" in on_cpu.reason
    assert "no TensorRT installed" in on_cpu.reason  # tensorrt-stubs (dev extra) is no TensorRT
    assert str(rtx_model) not in on_cpu.reason
    with pytest.raises(EngineCompatibilityError, match="tensorrt-rtx.*installed, but there is no CUDA GPU"):
        registry.choose(artifact, "tensorrt-rtx", (), device=0)
    on_a6000 = registry.choose(artifact, "auto", (A6000,), device=0)
    assert on_a6000.backend.name == "tensorrt-rtx" and on_a6000.verdict.engine == rtx_model / "model.rtx.engine"


def test_choosing_a_backend_without_a_gpu_imports_no_tensorrt(rtx_model):
    """Start-up: nothing of TensorRT can run without a GPU, so `infer` does not pay for importing it."""
    probe = ("import sys; from pathlib import Path; from deploy_kit.artifact import Artifact; "
             "from deploy_kit.backends import registry; "
             f"choice = registry.choose(Artifact.open(Path({str(rtx_model)!r})), 'auto', (), 0); "
             "print(choice.backend.name, sorted(m for m in sys.modules if m.startswith('tensorrt')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["onnxruntime-cpu", "[]"]


def test_tensorrt_executor_releases_context_engine_and_runtime(rtx_model):
    features = probe_flavor("tensorrt_rtx")
    assert features is not None
    try:
        executor = TensorRTExecutor(rtx_model / "model.rtx.engine", features)
    except EngineCompatibilityError as exc:  # no GPU that TensorRT-RTX runs on: it must not hold anything
        assert "could not deserialize the engine" in exc.one_line() and "model.rtx.engine" in exc.one_line()
        traceback = exc.__traceback__
        while traceback.tb_next is not None:
            traceback = traceback.tb_next
        executor = traceback.tb_frame.f_locals["self"]
    else:
        held = [weakref.ref(o) for o in (executor.context, executor.engine, executor._runtime)]
        executor.close()
        assert [ref() for ref in held] == [None, None, None]
    assert executor.released
    executor.close()  # idempotent
    assert executor.released
