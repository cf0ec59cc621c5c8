"""`deploy-kit doctor` on this machine (CI has no GPU): it says so and exits as documented."""

from __future__ import annotations

import json

from deploy_kit.cli import main
from deploy_kit.machine import detect_gpus


def test_doctor_without_gpu_reports_it_as_information_and_exits_0(capsys):
    """No GPU: the GPU-only parts (GPU, cuDNN, cuda-bindings, TensorRT's runtime) are `info`, and with
    everything the CPU path needs in place the exit code is 0."""
    if detect_gpus():
        import pytest

        pytest.skip("this machine has a GPU; tests/gpu covers it")
    code = main(["doctor", "--json"])
    checks = json.loads(capsys.readouterr().out)
    gpu = next(c for c in checks if c["name"] == "GPU")
    assert gpu["status"] == "info" and "onnxruntime-cpu" in gpu["fix"]
    assert next(c for c in checks if c["name"] == "cuDNN")["status"] in ("ok", "info")
    assert not [c for c in checks if c["status"] in ("warning", "error")], checks
    assert code == 0
    assert any(c["name"] == "ONNX Runtime" and c["status"] == "ok" for c in checks)
    video = {c["name"]: c["value"] for c in checks if c["name"].startswith("video")}
    assert video == {"video decoder": "PyAV (FFmpeg) on the CPU: no GPU",  # what `infer video.mp4` uses here
                     "video encoder": "libx264 on the CPU (no GPU)"}


def test_doctor_table_keeps_whole_paths_and_brackets_in_a_narrow_terminal():
    import io

    from rich.console import Console

    from deploy_kit.cli.doctor import print_table
    from deploy_kit.doctor import OK, Check

    path = "/tmp/newcomer/deploy-kit/.venv/lib/python3.11/site-packages/tensorrt_rtx_libs/and/more"
    out = io.StringIO()
    print_table([Check("TensorRT", OK, f"tensorrt_rtx 1.7.1 from {path}"),
                 Check("nvImageCodec", OK, "", "pip install 'deploy-kit[cuda]'")],
                Console(file=out, width=80, force_terminal=True, color_system=None))
    assert "deploy-kit[cuda]" in out.getvalue()  # brackets are text, not rich markup
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    value_column = "".join(line.split("│")[3].strip() for line in lines if line.count("│") >= 4)
    assert path in value_column and "…" not in out.getvalue()


def test_doctor_table_output(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert "GPU" in out and "ONNX Runtime" in out and code in (0, 1)
