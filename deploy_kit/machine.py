"""What GPUs this machine has, read through the CUDA driver API when it is present.

Used by the backends (can this engine run on that GPU), the engine build (workspace default, target
compute capability) and the compatibility checks. A machine without a driver or without `cuda-bindings` simply has no GPUs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .cuda import check_cuda, compute_capability


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "9.0"
    free_bytes: int
    total_bytes: int


@functools.lru_cache(maxsize=1)
def detect_gpus() -> tuple[GpuInfo, ...]:
    try:
        from cuda.bindings import driver
    except ImportError:
        return ()
    try:
        return tuple(_read_gpus(driver))
    except (RuntimeError, OSError):  # no libcuda.so, or no device behind it
        return ()


def _read_gpus(driver) -> list[GpuInfo]:  # type: ignore[no-untyped-def]
    check_cuda(driver.cuInit(0))
    gpus = []
    for index in range(check_cuda(driver.cuDeviceGetCount())):
        device = check_cuda(driver.cuDeviceGet(index))
        name = check_cuda(driver.cuDeviceGetName(64, device)).split(b"\0")[0].decode()
        major, minor = compute_capability(device)
        context = check_cuda(driver.cuDevicePrimaryCtxRetain(device))
        try:
            check_cuda(driver.cuCtxPushCurrent(context))
            free, total = check_cuda(driver.cuMemGetInfo())
            check_cuda(driver.cuCtxPopCurrent())
        finally:
            check_cuda(driver.cuDevicePrimaryCtxRelease(device))
        gpus.append(GpuInfo(index, name, f"{major}.{minor}", int(free), int(total)))
    return gpus
