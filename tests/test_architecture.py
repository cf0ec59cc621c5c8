"""The package's layers, checked by import-linter with the contracts in pyproject.toml; and proof that
the check fails when a lower layer imports a higher one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.skip("needs import-linter (pip install -e '.[dev]')")
    # PYTHONPATH first: the copy under test shadows the editable install of the real package.
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run([lint, "--no-logo", "--no-cache", "--config", str(project / "pyproject.toml")],
                          cwd=project, env=env, capture_output=True, text=True)


def _copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "deploy_kit", project / "deploy_kit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    return project


def test_every_import_contract_is_kept():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module,bad_import,contract", [
    ("runtime/session.py", "from ..convert import pipeline", "runtime and the backends never convert"),
    ("backends/base.py", "from .. import segmenter", "Layers"),
    ("backends/onnxruntime/cpu.py", "from ..tensorrt import features", "Backends do not import each other"),
    ("cuda.py", "from . import machine", "Layers"),
])
def test_a_lower_layer_importing_a_higher_one_breaks_a_contract(tmp_path, module, bad_import, contract):
    project = _copy_project(tmp_path)
    target = project / "deploy_kit" / module
    target.write_text(target.read_text() + f"\n{bad_import}  # noqa: the import under test\n")
    result = _lint_imports(project)
    assert result.returncode == 1, result.stdout
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken


def test_public_api():
    import deploy_kit
    from deploy_kit import Segmenter
    from deploy_kit.segmenter import Segmenter as Implementation

    assert Segmenter is Implementation and "Segmenter" in deploy_kit.__all__
