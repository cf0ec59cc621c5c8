"""mypy checks every TensorRT call in deploy_kit against the TensorRT 10.13 API (`tensorrt-stubs`).

Full TensorRT cannot run on the CI machine; this is what stops a call that TensorRT 10 does not have.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _stub_files() -> list[Path]:
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        pytest.skip("needs tensorrt-stubs (pip install --no-deps tensorrt-stubs==10.13.0.35.1)")
    site = Path(spec.origin).parents[1]
    files = [site / "tensorrt" / "__init__.pyi", *sorted((site / "tensorrt_bindings").glob("*.pyi"))]
    if not all(f.is_file() for f in files):
        pytest.skip("tensorrt-stubs is installed without its .pyi files")
    return files


def _sanitized_line(line: str) -> str:
    """The published stubs have a few plugin and layer signatures that do not parse (a parameter
    named `in`, a required parameter after defaults); those become `(*args, **kwargs)` so the files
    load. Every other signature, all the ones deploy-kit calls included, stays exactly as published."""
    stripped = line.strip()
    if not stripped.startswith("def "):
        return line
    try:
        ast.parse(stripped + " ...")
    except SyntaxError:
        head, _, tail = line.partition("(")
        return f"{head}(self, *args: typing.Any, **kwargs: typing.Any) -> {tail.rsplit('->', 1)[-1].strip()}"
    return line


def _write_stubs(stubs: Path) -> Path:
    for source in _stub_files():
        target = stubs / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = [_sanitized_line(ln) for ln in source.read_text().splitlines()
                 if ln.strip() != "import tensorrt_libs as tensorrt_libs"]  # a runtime-only package
        target.write_text("import typing\n" + "\n".join(lines) + "\n")
    return stubs


def test_tensorrt_code_type_checks_against_tensorrt_10_stubs(tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("needs mypy (pip install -e '.[dev]')")
    stubs = _write_stubs(tmp_path / "stubs")
    env = {**os.environ, "MYPYPATH": str(stubs)}
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_the_type_check_catches_a_call_tensorrt_10_does_not_have(tmp_path):
    """The check is only worth having if it fails on a wrong call: try one."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("needs mypy (pip install -e '.[dev]')")
    stubs = _write_stubs(tmp_path / "stubs")
    probe = tmp_path / "probe.py"
    probe.write_text("from __future__ import annotations\nimport tensorrt as trt\n"
                     "def f(config: trt.IBuilderConfig) -> None:\n    config.max_workspace_size_v2 = 1\n"
                     "def g(builder: trt.Builder) -> None:\n    builder.build_engine_v9()\n")
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--strict-optional", str(probe)],
                            cwd=tmp_path, env={**os.environ, "MYPYPATH": str(stubs)}, capture_output=True, text=True)
    assert result.returncode == 1
    assert "build_engine_v9" in result.stdout and "max_workspace_size_v2" in result.stdout
