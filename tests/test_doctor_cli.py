"""`deploy-kit doctor` on this machine (CI has no GPU): it says so and exits as documented."""

from __future__ import annotations

import json

from deploy_kit.cli import main
from deploy_kit.machine import detect_gpus


def test_doctor_without_gpu_reports_it_and_exits_with_warnings(capsys):
    if detect_gpus():
        import pytest

        pytest.skip("this machine has a GPU; tests/gpu covers it")
    code = main(["doctor", "--json"])
    checks = json.loads(capsys.readouterr().out)
    gpu = next(c for c in checks if c["name"] == "GPU")
    assert gpu["status"] == "warning" and "onnxruntime-cpu" in gpu["fix"]
    assert code == 1
    assert any(c["name"] == "ONNX Runtime" and c["status"] == "ok" for c in checks)


def test_doctor_table_output(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert "GPU" in out and "ONNX Runtime" in out and code in (0, 1)
