"""Every compatibility rule, driven by injected readings (plain data, no system access)."""

from __future__ import annotations

from deploy_kit.backends.tensorrt.support import supported_sms
from deploy_kit.doctor import ERROR, INFO, OK, WARNING, Readings, exit_code, run_checks
from deploy_kit.machine import GpuInfo

H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", "9.0", 70 << 30, 80 << 30)
ORIN = GpuInfo(0, "Orin", "8.7", 20 << 30, 30 << 30)
P100 = GpuInfo(0, "Tesla P100", "6.0", 10 << 30, 16 << 30)
V100 = GpuInfo(0, "Tesla V100", "7.0", 10 << 30, 16 << 30)
BASE = dict(driver_version="580.159.04", driver_cuda="13.0", cuda_runtime="13.0", onnxruntime="1.31.1",
            onnxruntime_providers=("CUDAExecutionProvider", "CPUExecutionProvider"))


def _status(checks, name_start):
    return [c.status for c in checks if c.name.startswith(name_start)]


def test_no_driver_or_gpu_is_information_that_names_the_cpu_backend():
    checks = run_checks(Readings(onnxruntime="1.32.0"))
    gpu = next(c for c in checks if c.name == "GPU")
    assert gpu.status == INFO and "onnxruntime-cpu" in gpu.fix
    assert exit_code([c for c in checks if c.name in ("GPU", "cuDNN", "TensorRT", "ONNX Runtime")]) == 0


def test_a_driver_without_a_visible_gpu_stays_a_warning():
    checks = run_checks(Readings(driver_version="580.1", onnxruntime="1.32.0"))
    assert next(c for c in checks if c.name == "GPU").status == WARNING
    assert exit_code(checks) == 1


def test_everything_in_order_exits_zero():
    r = Readings(gpus=(H100,), tensorrt_flavor="tensorrt", tensorrt_version="10.13.0", cudnn="9.1.0",
                 packages={"cuda-bindings": "13.3.1"}, nvimgcodec="0.9.0.20", **BASE)
    checks = run_checks(r)
    assert exit_code(checks) == 0, [c for c in checks if c.status != OK]


def test_nvimgcodec_is_shown_with_a_gpu_and_its_absence_says_what_it_costs():
    with_gpu = run_checks(Readings(gpus=(H100,), **BASE))
    missing = next(c for c in with_gpu if c.name == "nvImageCodec")
    assert missing.status == WARNING and "on the CPU" in missing.value and "deploy-kit[cuda]" in missing.fix
    assert "tegra" in missing.fix  # Jetson's build
    assert not [c for c in run_checks(Readings(**BASE)) if c.name == "nvImageCodec"]  # no GPU: irrelevant


def test_compute_capability_table():
    assert "9.0" not in supported_sms("tensorrt", "8.4.3")[0] and "9.0" in supported_sms("tensorrt", "8.5.1")[0]
    assert "6.0" in supported_sms("tensorrt", "8.6.1")[0] and "6.0" not in supported_sms("tensorrt", "10.0.1")[0]
    assert "7.0" in supported_sms("tensorrt", "10.4.0")[0] and "7.0" not in supported_sms("tensorrt", "10.5.0")[0]
    assert "8.7" in supported_sms("tensorrt", "10.3.0")[0]  # JetPack 6 on Orin
    assert supported_sms("tensorrt_rtx", "1.7.1.116")[0] == ["8.0", "8.6", "8.9", "12.0", "12.1"]
    assert supported_sms("tensorrt", "7.2.3") is None


def test_unsupported_gpu_is_a_warning_with_the_supported_list():
    for gpu, flavor, version in ((P100, "tensorrt", "10.0.1"), (V100, "tensorrt", "10.5.0"),
                                 (H100, "tensorrt_rtx", "1.7.1.116"), (H100, "tensorrt", "8.4.3")):
        checks = run_checks(Readings(gpus=(gpu,), tensorrt_flavor=flavor, tensorrt_version=version, **BASE))
        bad = next(c for c in checks if c.name == "TensorRT on GPU 0")
        assert bad.status == WARNING and f"SM {gpu.compute_capability}" in bad.value and "runs on SM" in bad.fix


def test_driver_older_than_cuda_runtime_names_the_minimum_driver():
    r = Readings(driver_version="535.104.05", driver_cuda="12.2", cuda_runtime="13.0", gpus=(H100,),
                 onnxruntime="1.31.1")
    runtime = next(c for c in run_checks(r) if c.name == "CUDA runtime")
    assert runtime.status == ERROR and "580.65.06" in runtime.fix
    assert exit_code(run_checks(r)) == 2
    minor_newer = Readings(driver_version="580.159.04", driver_cuda="13.0", cuda_runtime="13.3", gpus=(H100,),
                           onnxruntime="1.31.1")
    assert next(c for c in run_checks(minor_newer) if c.name == "CUDA runtime").status == OK


def test_old_cudnn_for_tensorrt_8_6_is_a_warning_with_versions():
    r = Readings(gpus=(ORIN,), tensorrt_flavor="tensorrt", tensorrt_version="8.6.1", cudnn="8.4.1", **BASE)
    cudnn = next(c for c in run_checks(r) if c.name == "cuDNN" and c.status == WARNING)
    assert cudnn.status == WARNING and "8.4.1" in cudnn.value and "8.9" in cudnn.value


def _meta(**changes):
    meta = {"flavor": "tensorrt", "tensorrt_version": "10.3.0", "target_compute_capabilities": ["8.7"],
            "engine_file": "model.engine", "precision": "fp16"}
    meta.update(changes)
    return meta


def test_engine_rules():
    here = Readings(gpus=(ORIN,), tensorrt_flavor="tensorrt", tensorrt_version="10.3.0", **BASE)
    assert _status(run_checks(here, _meta()), "engine") == [OK]
    other_version = run_checks(here, _meta(tensorrt_version="8.6.1"), onnx_present=True)
    engine = next(c for c in other_version if c.name == "engine")
    assert engine.status == WARNING and "8.6.1" in engine.value and "rebuilds" in engine.fix
    no_onnx = next(c for c in run_checks(here, _meta(target_compute_capabilities=["8.6"]), onnx_present=False,
                                         convert_command="deploy-kit convert M -o build/ --force") if c.name == "engine")
    assert no_onnx.status == ERROR and "deploy-kit convert M -o build/ --force" in no_onnx.fix
    rtx_on_h100 = Readings(gpus=(H100,), tensorrt_flavor="tensorrt_rtx", tensorrt_version="1.7.1.116", **BASE)
    rtx = next(c for c in run_checks(rtx_on_h100, _meta(flavor="tensorrt_rtx", tensorrt_version="1.7.1.116",
                                                        target_compute_capabilities=["8.0", "8.6"]), True)
               if c.name == "engine")
    assert "does not support SM 9.0" in rtx.value and "falls back" in rtx.fix
