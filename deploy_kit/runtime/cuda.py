"""The one helper that checks every CUDA driver, runtime and NVRTC call."""

from __future__ import annotations

from typing import Any

from ..errors import CudaError


def _error_name(err: Any) -> str:
    from cuda.bindings import driver, nvrtc, runtime

    if isinstance(err, driver.CUresult):
        ok, name = driver.cuGetErrorName(err)
        return name.decode() if ok == driver.CUresult.CUDA_SUCCESS else repr(err)
    if isinstance(err, runtime.cudaError_t):
        return runtime.cudaGetErrorName(err)[1].decode()
    if isinstance(err, nvrtc.nvrtcResult):
        return nvrtc.nvrtcGetErrorString(err)[1].decode()
    return repr(err)


def check_cuda(result: Any) -> Any:
    """Turns a cuda-python `(err, *values)` tuple into its values, or raises CudaError naming the error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise CudaError(f"CUDA call failed with {_error_name(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)
