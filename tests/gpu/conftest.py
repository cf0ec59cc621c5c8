"""GPU tests (`pytest -m gpu`): skipped through the same probes the code uses when no GPU is here.

The model: a `convert --onnx-only` output folder named by DEPLOY_KIT_GPU_MODEL (the device machine has
no Paddle), else the session's Paddle-exported PP-LiteSeg converted here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploy_kit.machine import detect_gpus


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(scope="session")
def gpu():
    gpus = detect_gpus()
    if not gpus:
        pytest.skip("needs an NVIDIA GPU with its driver and cuda-bindings (pip install cuda-bindings)")
    return gpus[0]


@pytest.fixture(scope="session")
def gpu_model(tmp_path_factory) -> Path:
    named = os.environ.get("DEPLOY_KIT_GPU_MODEL")
    if named:
        return Path(named)
    from deploy_kit.cli import main
    from tests.conftest import _export_random_pp_liteseg, MODEL_HW

    model = _export_random_pp_liteseg(tmp_path_factory.mktemp("gpu_paddle"), "none", [None, 3, *MODEL_HW],
                                      [{"type": "Resize", "target_size": [MODEL_HW[1], MODEL_HW[0]]},
                                       {"type": "Normalize"}])
    out = tmp_path_factory.mktemp("gpu_model")
    assert main(["convert", str(model), "-o", str(out), "--onnx-only"]) == 0
    return out
