"""Compatibility checks: driver, GPUs, CUDA runtime, cuDNN, TensorRT, ONNX Runtime, and whether an engine
can run here. Readings are plain data (`Readings`); rules are pure functions of them, so every rule is
tested with injected readings, and `read_machine()` is the only code that touches the system."""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from .backends.tensorrt.features import probe_tensorrt
from .backends.tensorrt.support import engine_problems, in_range, support_table, supported_sms, version_tuple
from .gpu_jpeg import gpu_jpeg_decoder
from .machine import GpuInfo, detect_gpus

OK, INFO, WARNING, ERROR = "ok", "info", "warning", "error"
# Needed only by GPU backends: on a machine without a GPU their absence is information, not a warning.
GPU_ONLY = ("GPU", "cuDNN", "TensorRT", "cuda-bindings", "nvImageCodec")


@dataclass(frozen=True)
class Readings:
    driver_version: str | None = None
    driver_cuda: str | None = None  # highest CUDA version the driver supports, "13.0"
    gpus: tuple[GpuInfo, ...] = ()
    cuda_runtime: str | None = None
    cudnn: str | None = None  # the library actually loaded, "9.1.0"
    tensorrt_flavor: str | None = None
    tensorrt_version: str | None = None
    tensorrt_location: str | None = None
    onnxruntime: str | None = None
    onnxruntime_providers: tuple[str, ...] = ()
    packages: dict[str, str | None] = field(default_factory=dict)  # cuda-bindings, paddle, paddle2onnx
    nvimgcodec: str | None = None  # nvImageCodec's version, which any of its CUDA builds reports
    jpeg_decoder: tuple[str, str] = ("cpu", "not checked")  # what --decoder auto picks on GPU 0, and why


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    value: str
    fix: str = ""


def check_gpus(r: Readings) -> list[Check]:
    if r.driver_version is None and not r.gpus:
        return [Check("GPU", WARNING, "no NVIDIA driver or GPU found",
                      "only the onnxruntime-cpu backend works here; install the NVIDIA driver for GPU backends")]
    if not r.gpus:
        return [Check("GPU", WARNING, f"driver {r.driver_version} but no GPU visible",
                      "check CUDA_VISIBLE_DEVICES and nvidia-smi; onnxruntime-cpu still works")]
    return [Check(f"GPU {g.index}", OK, f"{g.name}, SM {g.compute_capability}, "
                  f"{g.free_bytes / 2**30:.1f}/{g.total_bytes / 2**30:.1f} GiB free") for g in r.gpus]


def check_driver(r: Readings) -> list[Check]:
    if r.driver_cuda is None:
        return []
    checks = [Check("NVIDIA driver", OK, f"{r.driver_version or '?'} (CUDA {r.driver_cuda})")]
    # Within a major version a newer runtime runs on an older driver (CUDA minor version compatibility).
    if r.cuda_runtime and version_tuple(r.cuda_runtime)[0] > version_tuple(r.driver_cuda)[0]:
        needed = next((row for row in reversed(support_table()["min_driver_for_cuda"])
                       if version_tuple(row["cuda"])[0] <= version_tuple(r.cuda_runtime)[0]), None)
        checks.append(Check("CUDA runtime", ERROR, f"{r.cuda_runtime}, newer than the driver's CUDA {r.driver_cuda}",
                            f"install NVIDIA driver >= {needed['driver'] if needed else 'a newer one'} "
                            f"({needed['source'] if needed else 'CUDA release notes'})"))
    elif r.cuda_runtime:
        checks.append(Check("CUDA runtime", OK, r.cuda_runtime))
    return checks


def check_tensorrt(r: Readings) -> list[Check]:
    if r.tensorrt_flavor is None or r.tensorrt_version is None:
        return [Check("TensorRT", WARNING, "not installed",
                      "pip install tensorrt (or tensorrt-rtx-cu13); ONNX Runtime backends still work")]
    name = f"{r.tensorrt_flavor} {r.tensorrt_version}"
    checks = [Check("TensorRT", OK, f"{name} from {r.tensorrt_location or '?'}")]
    support = supported_sms(r.tensorrt_flavor, r.tensorrt_version)
    for gpu in r.gpus:
        if support is None:
            checks.append(Check(f"TensorRT on GPU {gpu.index}", WARNING, f"{name} is not in deploy-kit's support table",
                                "check NVIDIA's support matrix for this release"))
        elif gpu.compute_capability not in support[0]:
            # Not blocking: infer falls back to ONNX Runtime; blocking is what stops every backend.
            checks.append(Check(f"TensorRT on GPU {gpu.index}", WARNING,
                                f"{name} does not support SM {gpu.compute_capability} ({gpu.name})",
                                f"it runs on SM {', '.join(support[0])} ({support[1]}); use a release that "
                                "supports this GPU, or --backend onnxruntime-cuda"))
    for row in support_table()["cudnn_expected"]:
        if row["flavor"] == r.tensorrt_flavor and in_range(r.tensorrt_version, row) and r.cudnn and \
                version_tuple(r.cudnn)[:2] < version_tuple(row["cudnn"])[:2]:
            checks.append(Check("cuDNN", WARNING, f"{r.cudnn} loaded, {name} expects {row['cudnn']}",
                                f"install cuDNN >= {row['cudnn']} ({row['source']})"))
    return checks


def check_engine(meta: dict[str, Any], r: Readings, onnx_present: bool, convert_command: str) -> list[Check]:
    """Can the engine described by `meta` run here? Rebuild when its ONNX is present, else say how."""
    problems, hopeless = engine_problems(meta, r.tensorrt_flavor, r.tensorrt_version, r.gpus[0] if r.gpus else None)
    if not problems:
        return [Check("engine", OK, f"{meta.get('engine_file')} runs here ({meta.get('precision')})")]
    fix = ("infer falls back to ONNX Runtime" if hopeless else
           "infer rebuilds it into the cache from its ONNX" if onnx_present else f"rebuild it: {convert_command}")
    return [Check("engine", WARNING if hopeless or onnx_present else ERROR, "; ".join(problems), fix)]


def check_nvimgcodec(r: Readings) -> list[Check]:
    """nvImageCodec matters only with a GPU: it decodes JPEGs on the GPU's hardware decoder there, and
    JPEG-encodes overlays."""
    if not r.gpus:
        return []
    kind, why = r.jpeg_decoder
    decoder = Check("JPEG decoder", OK, f"--decoder auto picks {kind} with a GPU backend: {why}")
    if r.nvimgcodec:
        return [Check("nvImageCodec", OK, f"{r.nvimgcodec} (overlays are JPEG-encoded on the GPU)"), decoder]
    fix = "pip install 'deploy-kit[cuda]' (on Jetson: pip install 'nvidia-nvimgcodec-tegra-cu12[nvjpeg]')"
    return [Check("nvImageCodec", WARNING, "not installed: JPEGs are decoded and overlays encoded on the CPU", fix),
            replace(decoder, status=WARNING, fix=fix)]


def blocking_errors(r: Readings) -> list[Check]:
    """What stops any GPU work before it starts: a driver too old for the CUDA runtime."""
    return [c for c in check_driver(r) if c.status == ERROR]


def startup_readings() -> Readings:
    """What `infer` and `convert` check before they start: GPUs, driver, runtime (no package scan, and no
    TensorRT import: TensorRT-RTX took 42 ms of a 2-core machine's start-up to import, GPU or not)."""
    return Readings(driver_version=_driver_version(), driver_cuda=_driver_cuda(), gpus=detect_gpus(),
                    cuda_runtime=_cuda_runtime())


def fast_readings() -> Readings:
    """The start-up readings and the installed TensorRT."""
    trt = probe_tensorrt()
    return replace(startup_readings(), tensorrt_flavor=trt.flavor if trt else None,
                   tensorrt_version=trt.version if trt else None,
                   tensorrt_location=str(Path(trt.module.__file__).parent) if trt else None)


def run_checks(r: Readings, model_meta: dict[str, Any] | None = None, onnx_present: bool = False,
               convert_command: str = "deploy-kit convert MODEL -o build/ --force") -> list[Check]:
    checks = check_gpus(r) + check_driver(r)
    checks.append(Check("cuDNN", OK if r.cudnn else WARNING, r.cudnn or "not found",
                        "" if r.cudnn else "only needed by ONNX Runtime CUDA and some TensorRT plugins"))
    checks += check_tensorrt(r)
    checks.append(Check("ONNX Runtime", OK if r.onnxruntime else ERROR,
                        f"{r.onnxruntime} ({', '.join(r.onnxruntime_providers)})" if r.onnxruntime else "not installed",
                        "" if r.onnxruntime else "pip install onnxruntime (or onnxruntime-gpu)"))
    checks += check_nvimgcodec(r)
    for name, version in r.packages.items():
        checks.append(Check(name, OK if version else WARNING, version or "not installed",
                            "" if version else f"pip install {name}" + (" (needed to export)" if "paddle" in name else "")))
    if model_meta is not None:
        checks += check_engine(model_meta, r, onnx_present, convert_command)
    return informational_without_gpu(checks, r)


def informational_without_gpu(checks: list[Check], r: Readings) -> list[Check]:
    """On a machine with no NVIDIA driver or GPU, what only GPU backends need is `info`: exit 1 means
    something the user can run here is degraded, and the CPU path needs no GPU, cuDNN, TensorRT or
    cuda-bindings."""
    if r.gpus or r.driver_version is not None:  # a driver without a visible GPU is a setup to fix
        return checks
    return [replace(c, status=INFO) if c.name in GPU_ONLY and c.status == WARNING else c for c in checks]


def exit_code(checks: list[Check]) -> int:
    statuses = {c.status for c in checks}
    return 2 if ERROR in statuses else 1 if WARNING in statuses else 0


def read_machine() -> Readings:
    """All readings of this machine, for `deploy-kit doctor`."""
    ort_version, providers = _onnxruntime()
    return replace(fast_readings(), cudnn=_cudnn(), onnxruntime=ort_version,
                               onnxruntime_providers=providers,
                               packages={n: _package(n) for n in ("cuda-bindings", "paddlepaddle", "paddle2onnx")},
                               nvimgcodec=next(filter(None, map(_package, _NVIMGCODEC_BUILDS)), None),
                               jpeg_decoder=_jpeg_decoder())


def _jpeg_decoder() -> tuple[str, str]:
    """What `--decoder auto` picks on GPU 0 (the probe decodes a small JPEG there), and why."""
    if not detect_gpus():
        return "cpu", "no CUDA GPU"
    decoder, why = gpu_jpeg_decoder(0)
    return ("gpu" if decoder is not None else "cpu"), why


_NVIMGCODEC_BUILDS = ("nvidia-nvimgcodec-cu13", "nvidia-nvimgcodec-cu12", "nvidia-nvimgcodec-tegra-cu12")


def _package(name: str) -> str | None:
    for candidate in (name, name + "-gpu"):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def _driver_version() -> str | None:
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", text)
    return match.group(1) if match else None


def _cuda_version(module: str, getter: str) -> str | None:
    """A CUDA version (as `major.minor`) from `cuda.bindings.<module>.<getter>()`, or None without one."""
    try:
        bindings = __import__(f"cuda.bindings.{module}", fromlist=[getter])
        err, version = getattr(bindings, getter)()
        return f"{version // 1000}.{version % 1000 // 10}" if int(err) == 0 else None
    except (ImportError, RuntimeError, OSError):
        return None


def _driver_cuda() -> str | None:
    return _cuda_version("driver", "cuDriverGetVersion")


def _cuda_runtime() -> str | None:
    return _cuda_version("runtime", "cudaRuntimeGetVersion")


def _cudnn() -> str | None:
    for name in ("libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"):
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        library.cudnnGetVersion.restype = ctypes.c_size_t
        version = int(library.cudnnGetVersion())
        major = version // 10000 if version >= 10000 else version // 1000
        minor = version % 10000 // 100 if version >= 10000 else version % 1000 // 100
        return f"{major}.{minor}.{version % 100}"
    return None


def _onnxruntime() -> tuple[str | None, tuple[str, ...]]:
    try:
        import onnxruntime as ort
    except ImportError:
        return None, ()
    return ort.__version__, tuple(ort.get_available_providers())
