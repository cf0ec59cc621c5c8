"""Reading Paddle's combined parameter file (`model.pdiparams`) without importing Paddle.

The file is Paddle's `save_combine` stream: for each tensor, a LoD header, a `TensorDesc` protobuf
(dtype and dims) and the raw little-endian data. Scanning it lets `convert` reject a truncated or
corrupt file with a precise message before paddle2onnx aborts on it, and lets the shipped demo model
store its weights as float16 while restoring the exact float32 file Paddle expects.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError

# Paddle's VarType codes for the dtypes a parameter file holds.
_DTYPES = {0: np.bool_, 1: np.int16, 2: np.int32, 3: np.int64, 4: np.float16, 5: np.float32, 6: np.float64,
           20: np.uint8, 21: np.int8}
_FP32 = 5


@dataclass(frozen=True)
class TensorRecord:
    """Where one tensor lives in the file: its header bytes, dtype code, shape and data span."""

    header: bytes
    dtype_code: int
    shape: tuple[int, ...]
    data_offset: int
    nbytes: int


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _parse_tensor_desc(desc: bytes) -> tuple[int, tuple[int, ...]]:
    """Decodes `TensorDesc {data_type = 1; repeated int64 dims = 2}` (packed or not)."""
    pos, dtype, dims = 0, -1, []
    while pos < len(desc):
        key, pos = _varint(desc, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(desc, pos)
            if field == 1:
                dtype = value
            elif field == 2:
                dims.append(value - (1 << 64) if value >= 1 << 63 else value)
        elif wire == 2:
            length, pos = _varint(desc, pos)
            end = pos + length
            while field == 2 and pos < end:
                value, pos = _varint(desc, pos)
                dims.append(value)
            pos = end
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    return dtype, tuple(dims)


def scan(path: Path) -> list[TensorRecord]:
    """Lists the tensors in `path`; raises ConfigError naming the file if it is truncated or corrupt.
    Mapped, not read: only the headers' pages are touched (reading 32 MB was a tenth of `infer`'s start-up)."""
    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return _scan(b"", path)  # mmap cannot map an empty file
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _scan(data, path)


def _scan(data: bytes | mmap.mmap, path: Path) -> list[TensorRecord]:
    records, pos = [], 0
    try:
        while pos < len(data):
            start = pos
            version, lod_levels = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if lod_levels > (len(data) - pos) // 8:
                raise ValueError(f"{lod_levels} LoD levels at byte {start}, more than the file holds")
            for _ in range(lod_levels):
                (size,) = struct.unpack_from("<Q", data, pos)
                pos += 8 + size
            tensor_version, desc_size = struct.unpack_from("<Ii", data, pos)
            pos += 8
            if version != 0 or tensor_version != 0 or not 0 < desc_size < 4096:
                raise ValueError(f"bad tensor header at byte {start}")
            dtype, shape = _parse_tensor_desc(data[pos:pos + desc_size])
            pos += desc_size
            if dtype not in _DTYPES or any(not 0 <= d <= len(data) for d in shape) or len(shape) > 16:
                raise ValueError(f"unknown dtype {dtype} or shape {shape[:8]} at byte {start}")
            nbytes = math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize  # Python ints: no overflow
            if pos + nbytes > len(data):
                raise ValueError(f"tensor at byte {start} needs {nbytes} bytes, file ends {len(data) - pos} later")
            records.append(TensorRecord(data[start:pos], dtype, shape, pos, nbytes))
            pos += nbytes
    except (ValueError, struct.error) as exc:
        raise ConfigError("corrupt or truncated parameter file", path=path, note=str(exc),
                          hint="re-export the model with PaddleSeg's tools/export.py") from None
    if not records:
        raise ConfigError("parameter file holds no tensors", path=path,
                          hint="re-export the model with PaddleSeg's tools/export.py")
    return records


def compress_to_fp16(path: Path, out: Path) -> None:
    """Stores `path` as an .npz of headers plus float16 payloads (other dtypes kept as they are)."""
    raw = path.read_bytes()
    arrays: dict[str, np.ndarray] = {}
    for i, rec in enumerate(scan(path)):
        values = np.frombuffer(raw, _DTYPES[rec.dtype_code], int(np.prod(rec.shape, dtype=np.int64)), rec.data_offset)
        arrays[f"h{i:05d}"] = np.frombuffer(rec.header, np.uint8)
        arrays[f"d{i:05d}"] = values.astype(np.float16) if rec.dtype_code == _FP32 else values
    np.savez_compressed(out, **arrays)


def restore_from_fp16(npz: Path, out: Path) -> None:
    """Writes the float32 parameter file that `compress_to_fp16` stored (headers kept byte for byte)."""
    with np.load(npz) as stored, out.open("wb") as handle:
        for name in sorted(k for k in stored.files if k.startswith("h")):
            values = stored["d" + name[1:]]
            handle.write(stored[name].tobytes())
            handle.write((values.astype(np.float32) if values.dtype == np.float16 else values).tobytes())
