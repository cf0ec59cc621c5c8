"""A small CUDA layer on `cuda.bindings` (driver API and NVRTC): the one error check, a context,
device and pinned host buffers, streams and events, each owned by a context manager with an
idempotent `close()`, and NVRTC kernels compiled once per source and GPU architecture."""

from __future__ import annotations

import ctypes
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import CudaError
from .fileio import write_bytes_atomic

log = logging.getLogger(__name__)


def _error_name(err: Any) -> str:
    from cuda.bindings import driver, nvrtc

    if isinstance(err, driver.CUresult):
        status, name = driver.cuGetErrorName(err)
        return name.decode() if int(status) == 0 else repr(err)
    if isinstance(err, nvrtc.nvrtcResult):
        return nvrtc.nvrtcGetErrorString(err)[1].decode()
    try:
        from cuda.bindings import runtime

        if isinstance(err, runtime.cudaError_t):
            return runtime.cudaGetErrorName(err)[1].decode()
    except ImportError:
        pass
    return repr(err)


def check_cuda(result: Any) -> Any:
    """Turns a cuda-python `(err, *values)` tuple into its values, or raises CudaError naming the error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise CudaError(f"CUDA call failed with {_error_name(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def compute_capability(device: Any) -> tuple[int, int]:
    """(major, minor) of a CUdevice."""
    from cuda.bindings import driver

    attr = driver.CUdevice_attribute
    major = check_cuda(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device))
    minor = check_cuda(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device))
    return int(major), int(minor)


class _Owned:
    """Idempotent close() plus context-manager support; `__del__` only warns about a leak."""

    _closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    def _release(self) -> None:
        raise NotImplementedError

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._closed:
            log.warning("%s was not closed; releasing it at garbage collection", type(self).__name__)


class CudaContext(_Owned):
    """The primary context of one device, made current on this thread while open."""

    def __init__(self, device_index: int = 0) -> None:
        from cuda.bindings import driver

        self._driver = driver
        check_cuda(driver.cuInit(0))
        count = check_cuda(driver.cuDeviceGetCount())
        if not 0 <= device_index < count:
            raise CudaError(f"no CUDA device {device_index}", note=f"{count} device(s) found",
                            hint=f"use --device 0..{count - 1}")
        self.device = check_cuda(driver.cuDeviceGet(device_index))
        self.index = device_index
        self.context = check_cuda(driver.cuDevicePrimaryCtxRetain(self.device))
        check_cuda(driver.cuCtxSetCurrent(self.context))
        self.compute_capability = compute_capability(self.device)
        self._closed = False

    def make_current(self) -> None:
        check_cuda(self._driver.cuCtxSetCurrent(self.context))

    def _release(self) -> None:
        check_cuda(self._driver.cuDevicePrimaryCtxRelease(self.device))


class DeviceBuffer(_Owned):
    """`nbytes` of device memory."""

    def __init__(self, nbytes: int) -> None:
        from cuda.bindings import driver

        self._driver = driver
        self.nbytes = int(nbytes)
        self.ptr = int(check_cuda(driver.cuMemAlloc(max(1, self.nbytes))))
        self._closed = False

    def _release(self) -> None:
        check_cuda(self._driver.cuMemFree(self.ptr))


class PinnedBuffer(_Owned):
    """Page-locked host memory with a numpy view, so host↔device copies can be asynchronous."""

    def __init__(self, nbytes: int) -> None:
        from cuda.bindings import driver

        self._driver = driver
        self.nbytes = int(nbytes)
        self.ptr = int(check_cuda(driver.cuMemHostAlloc(max(1, self.nbytes), 0)))
        self._closed = False

    def view(self, dtype: Any, shape: Sequence[int]) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        if count * np.dtype(dtype).itemsize > self.nbytes:
            raise ValueError(f"view of {count} x {np.dtype(dtype)} exceeds {self.nbytes} pinned bytes")
        raw = (ctypes.c_uint8 * max(1, self.nbytes)).from_address(self.ptr)
        return np.frombuffer(memoryview(raw), dtype=dtype, count=count).reshape(shape)

    def _release(self) -> None:
        check_cuda(self._driver.cuMemFreeHost(self.ptr))


class Stream(_Owned):
    def __init__(self) -> None:
        from cuda.bindings import driver

        self._driver = driver
        self.handle = check_cuda(driver.cuStreamCreate(driver.CUstream_flags.CU_STREAM_NON_BLOCKING))
        self._closed = False

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def copy_to_device(self, dst: DeviceBuffer, src: PinnedBuffer, nbytes: int, dst_offset: int = 0,
                       src_offset: int = 0) -> None:
        check_cuda(self._driver.cuMemcpyHtoDAsync(dst.ptr + dst_offset, src.ptr + src_offset, nbytes, self.handle))

    def copy_to_host(self, dst: PinnedBuffer, src: DeviceBuffer, nbytes: int, dst_offset: int = 0,
                     src_offset: int = 0) -> None:
        check_cuda(self._driver.cuMemcpyDtoHAsync(dst.ptr + dst_offset, src.ptr + src_offset, nbytes, self.handle))

    def copy_device(self, dst_ptr: int, src_ptr: int, nbytes: int) -> None:
        """Device to device, between buffers this process does not all own (a decoder's images)."""
        check_cuda(self._driver.cuMemcpyDtoDAsync(dst_ptr, src_ptr, nbytes, self.handle))

    def zero(self, dst: DeviceBuffer, nbytes: int) -> None:
        check_cuda(self._driver.cuMemsetD8Async(dst.ptr, 0, nbytes, self.handle))

    def synchronize(self) -> None:
        check_cuda(self._driver.cuStreamSynchronize(self.handle))

    def wait_for_stream(self, other: int) -> None:
        """Work queued here from now on starts after the work queued so far on `other`, a stream handle
        of a library (the one an array interface names for its data)."""
        event = check_cuda(self._driver.cuEventCreate(self._driver.CUevent_flags.CU_EVENT_DISABLE_TIMING))
        check_cuda(self._driver.cuEventRecord(event, self._driver.CUstream(other)))
        check_cuda(self._driver.cuStreamWaitEvent(self.handle, event, 0))
        check_cuda(self._driver.cuEventDestroy(event))  # released once the device is past it

    def wait(self, event: Event) -> None:
        """Work queued on this stream from now on starts only after `event` (recorded on any stream)."""
        check_cuda(self._driver.cuStreamWaitEvent(self.handle, event.handle, 0))

    def _release(self) -> None:
        check_cuda(self._driver.cuStreamDestroy(self.handle))


class Event(_Owned):
    def __init__(self, timing: bool = True) -> None:
        from cuda.bindings import driver

        self._driver = driver
        flags = driver.CUevent_flags.CU_EVENT_DEFAULT if timing else driver.CUevent_flags.CU_EVENT_DISABLE_TIMING
        self.handle = check_cuda(driver.cuEventCreate(flags))
        self._closed = False

    def record(self, stream: Stream) -> None:
        check_cuda(self._driver.cuEventRecord(self.handle, stream.handle))

    def synchronize(self) -> None:
        check_cuda(self._driver.cuEventSynchronize(self.handle))

    def elapsed_ms(self, start: Event) -> float:
        fn = getattr(self._driver, "cuEventElapsedTime_v2", None) or self._driver.cuEventElapsedTime
        return float(check_cuda(fn(start.handle, self.handle)))

    def _release(self) -> None:
        check_cuda(self._driver.cuEventDestroy(self.handle))


class CudaGraph(_Owned):
    """Work queued on a stream, captured once and replayed with one launch (no per-kernel CPU cost)."""

    def __init__(self, stream: Stream, enqueue: Callable[[], None]) -> None:
        from cuda.bindings import driver

        self._driver = driver
        mode = driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        check_cuda(driver.cuStreamBeginCapture(stream.handle, mode))
        try:
            enqueue()
        finally:
            graph = check_cuda(driver.cuStreamEndCapture(stream.handle))
        try:
            self.executable = check_cuda(driver.cuGraphInstantiate(graph, 0))
        finally:
            check_cuda(driver.cuGraphDestroy(graph))
        self._closed = False

    def launch(self, stream: Stream) -> None:
        check_cuda(self._driver.cuGraphLaunch(self.executable, stream.handle))

    def _release(self) -> None:
        check_cuda(self._driver.cuGraphExecDestroy(self.executable))


KernelArg = tuple[Any, Any]  # (value, ctypes type)


@dataclass
class Kernel:
    """A compiled kernel function; launch() takes (value, ctypes type) pairs."""

    function: Any
    name: str

    def launch(self, grid: tuple[int, int, int], block: tuple[int, int, int], stream: Stream,
               args: Sequence[KernelArg]) -> None:
        from cuda.bindings import driver

        values = tuple(a[0] for a in args)
        types = tuple(a[1] for a in args)
        check_cuda(driver.cuLaunchKernel(self.function, *grid, *block, 0, stream.handle, (values, types), 0))


@dataclass
class KernelModule(_Owned):
    """Kernels of one CUDA source, compiled by NVRTC for this GPU and cached on disk per arch."""

    source: str
    compute_capability: tuple[int, int]
    cache_dir: Path | None = None
    headers: tuple[tuple[str, str], ...] = ()  # (include name, source) pairs NVRTC may #include
    options: tuple[str, ...] = ("--std=c++17", "-default-device")
    _module: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        from cuda.bindings import driver

        self._driver = driver
        cubin = self._load_or_compile()
        self._module = check_cuda(driver.cuModuleLoadData(cubin))
        self._functions: dict[str, Kernel] = {}
        self._closed = False

    @property
    def arch(self) -> str:
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"

    def _load_or_compile(self) -> bytes:
        key = self.source + "".join(n + h for n, h in self.headers) + self.arch + " ".join(self.options)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        cached = self.cache_dir / f"{digest}_{self.arch}.cubin" if self.cache_dir else None
        if cached is not None and cached.is_file():
            return cached.read_bytes()
        cubin = compile_cubin(self.source, self.arch, self.options, self.headers)
        if cached is not None:
            write_bytes_atomic(cached, cubin)
        return cubin

    def function(self, name: str) -> Kernel:
        if name not in self._functions:
            self._functions[name] = Kernel(check_cuda(self._driver.cuModuleGetFunction(self._module, name.encode())), name)
        return self._functions[name]

    def _release(self) -> None:
        check_cuda(self._driver.cuModuleUnload(self._module))


def compile_cubin(source: str, arch: str, options: Sequence[str], headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """NVRTC: CUDA C++ source → cubin for `arch`; a compile error carries NVRTC's log."""
    from cuda.bindings import nvrtc

    program = check_cuda(nvrtc.nvrtcCreateProgram(source.encode(), b"deploy_kit.cu", len(headers),
                                                  [h[1].encode() for h in headers], [h[0].encode() for h in headers]))
    try:
        opts = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in options)]
        err, = nvrtc.nvrtcCompileProgram(program, len(opts), opts)
        if int(err) != 0:
            size = check_cuda(nvrtc.nvrtcGetProgramLogSize(program))
            text = b" " * size
            check_cuda(nvrtc.nvrtcGetProgramLog(program, text))
            raise CudaError(f"NVRTC could not compile the kernels for {arch}",
                            note=text.decode(errors="replace").strip().splitlines()[0] if size > 1 else None)
        size = check_cuda(nvrtc.nvrtcGetCUBINSize(program))
        cubin = b" " * size
        check_cuda(nvrtc.nvrtcGetCUBIN(program, cubin))
        return cubin
    finally:
        check_cuda(nvrtc.nvrtcDestroyProgram(program))
