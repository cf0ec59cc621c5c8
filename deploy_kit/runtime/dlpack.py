"""Device tensors handed to and taken from other frameworks without a copy, by the DLPack protocol
(DLPack 0.8's `DLManagedTensor` in a "dltensor" capsule): Triton's python backend takes our
preprocessed batch with `pb_utils.Tensor.from_dlpack` and gives its GPU inputs with `to_dlpack()`.
cuda-python has no DLPack producer for raw allocations, so the structures are declared here with
ctypes, as the DLPack header defines them."""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cuda import CudaContext, DeviceBuffer

_KDL_CUDA = 2
_DTYPE_CODES = {"i": 0, "u": 1, "f": 2}  # kDLInt, kDLUInt, kDLFloat


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _Device), ("ndim", ctypes.c_int32), ("dtype", _DataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _ManagedTensor(ctypes.Structure):
    pass


_Deleter = ctypes.CFUNCTYPE(None, ctypes.POINTER(_ManagedTensor))
_ManagedTensor._fields_ = [("dl_tensor", _Tensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _Deleter)]

_CAPSULE_NAME = b"dltensor"
# A capsule's destructor gets it with no references left: taken as a py_object, ctypes would count it
# up and down again and destroy it a second time (a segfault, measured), so it is a bare pointer there.
_CapsuleDestructor = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, _CapsuleDestructor]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_raw_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_IsValid", _api))
_raw_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_GetPointer", _api))

# Exported tensors, by their DLManagedTensor's address, until the consumer (or the unconsumed
# capsule's destructor) calls the deleter: the device memory and the ctypes structures live until then.
_exported: dict[int, tuple[DeviceTensor, _ManagedTensor, Any]] = {}
_exported_lock = threading.Lock()


@dataclass(frozen=True)
class DeviceTensor:
    """A C-contiguous array in device memory that owns its buffer (freed when the last consumer lets go)."""

    buffer: DeviceBuffer
    context: CudaContext
    shape: tuple[int, ...]
    dtype: np.dtype

    def __dlpack_device__(self) -> tuple[int, int]:
        return _KDL_CUDA, self.context.index

    def __dlpack__(self, stream: Any = None, **_: Any) -> Any:
        """A capsule of this tensor. The producer's work is already finished (the caller synchronized its
        stream before handing the tensor on), so any consumer stream may read it at once."""
        shape = (ctypes.c_int64 * len(self.shape))(*self.shape)
        managed = _ManagedTensor()
        managed.dl_tensor = _Tensor(self.buffer.ptr, _Device(_KDL_CUDA, self.context.index), len(self.shape),
                                    _DataType(_DTYPE_CODES[self.dtype.kind], self.dtype.itemsize * 8, 1), shape, None, 0)
        managed.deleter = _free_exported
        address = ctypes.addressof(managed)
        with _exported_lock:
            _exported[address] = (self, managed, shape)
        return _api.PyCapsule_New(address, _CAPSULE_NAME, _destroy_unconsumed)


@_Deleter
def _free_exported(managed: Any) -> None:
    with _exported_lock:
        tensor, _, _ = _exported.pop(ctypes.addressof(managed.contents))
    tensor.context.make_current()  # the deleter runs on the consumer's thread
    tensor.buffer.close()


@_CapsuleDestructor
def _destroy_unconsumed(capsule: Any) -> None:
    """A capsule nobody consumed (its name is still "dltensor") frees what it holds."""
    if _raw_is_valid(capsule, _CAPSULE_NAME):
        managed = ctypes.cast(_raw_get_pointer(capsule, _CAPSULE_NAME), ctypes.POINTER(_ManagedTensor))
        managed.contents.deleter(managed)


@dataclass(frozen=True)
class BorrowedTensor:
    """Another framework's C-contiguous CUDA tensor, read through its pointer while `capsule` is held."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    device: int
    capsule: Any


def borrow(capsule: Any) -> BorrowedTensor:
    """The tensor in a "dltensor" capsule (e.g. `pb_utils.Tensor.to_dlpack()`), left unconsumed so that
    the capsule's own destructor releases it; ValueError when it is not a packed CUDA tensor."""
    address = _api.PyCapsule_GetPointer(capsule, _CAPSULE_NAME)
    tensor = ctypes.cast(address, ctypes.POINTER(_ManagedTensor)).contents.dl_tensor
    if tensor.device.device_type != _KDL_CUDA:
        raise ValueError(f"the tensor is not in CUDA device memory (DLPack device type {tensor.device.device_type})")
    shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
    if tensor.strides:
        packed = np.cumprod((1, *shape[:0:-1]))[::-1]
        if any(shape[i] > 1 and tensor.strides[i] != packed[i] for i in range(tensor.ndim)):
            raise ValueError(f"the tensor of shape {list(shape)} is not packed (C order)")
    kinds = {code: kind for kind, code in _DTYPE_CODES.items()}
    if tensor.dtype.code not in kinds or tensor.dtype.lanes != 1:
        raise ValueError(f"DLPack type code {tensor.dtype.code} x{tensor.dtype.lanes} has no numpy type here")
    dtype = np.dtype(f"{kinds[tensor.dtype.code]}{tensor.dtype.bits // 8}")
    return BorrowedTensor(int(tensor.data or 0) + int(tensor.byte_offset), shape, dtype, int(tensor.device.device_id),
                          capsule)
