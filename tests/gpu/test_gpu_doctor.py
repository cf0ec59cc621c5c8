"""`doctor` on the real GPU, and a TensorRT-RTX engine on a GPU its runtime does not support (SM 9.0):
refused before any deserialization, and infer falls back to ONNX Runtime CUDA saying why."""

from __future__ import annotations

import json
import shutil

import pytest

from deploy_kit.cli import main
from deploy_kit.backends.tensorrt.features import probe_tensorrt
from deploy_kit.artifact import Artifact
from deploy_kit.backends.tensorrt.support import supported_sms
from deploy_kit.doctor import read_machine


def test_real_readings(gpu, capsys):
    readings = read_machine()
    assert readings.gpus[0].compute_capability == gpu.compute_capability
    assert readings.driver_version and readings.driver_cuda
    code = main(["doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert f"SM {gpu.compute_capability}" in checks["GPU 0"]["value"]
    assert readings.driver_version in checks["NVIDIA driver"]["value"]
    assert checks["cuDNN"]["value"] == (readings.cudnn or "not found")
    if readings.cudnn:
        assert readings.cudnn.split(".")[0] in ("8", "9")
    assert code in (0, 1, 2)
    kind, why = readings.jpeg_decoder  # the probe decoded a JPEG on the GPU's hardware decoder, or says why not
    assert checks["JPEG decoder"]["value"] == f"--decoder auto picks {kind} with a GPU backend: {why}"
    assert kind == "gpu" or not readings.nvimgcodec or "no hardware JPEG decoder" in why
    if "video decoder" in checks:  # with PyAV: NVDEC where PyNvVideoCodec loads, else why not and the fix
        decoder = checks["video decoder"]
        assert decoder["value"].startswith("files on the GPU's NVDEC") or decoder["fix"], decoder
    print(json.dumps(checks, indent=1))


def test_rtx_engine_on_unsupported_gpu_is_refused_and_infer_falls_back(gpu, gpu_model, tmp_path, capsys, photos):
    features = probe_tensorrt("tensorrt_rtx")
    if features is None or features.flavor != "tensorrt_rtx":
        pytest.skip("needs TensorRT-RTX (../shared/gpu/stage.sh --with-trt-rtx)")
    if gpu.compute_capability in supported_sms("tensorrt_rtx", features.version)[0]:
        pytest.skip(f"TensorRT-RTX supports SM {gpu.compute_capability}: nothing to refuse")
    from deploy_kit.convert.pipeline import rebuild_engine

    folder = tmp_path / "model"
    shutil.copytree(gpu_model, folder)
    rebuild_engine(Artifact.open(folder), features, gpu, target_sms=("8.6",), out_dir=folder)  # RTX builds for 8.6 anywhere
    assert main(["doctor", "--model", str(folder), "--json"]) in (1, 2)
    engine = next(c for c in json.loads(capsys.readouterr().out) if c["name"] == "engine")
    assert f"does not support SM {gpu.compute_capability}" in engine["value"]
    assert main(["infer", "tests/data/photos", "--model", str(folder), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "backend: onnxruntime-cuda" in out and f"does not support SM {gpu.compute_capability}" in out
