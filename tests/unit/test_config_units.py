"""Option parsing and the Paddle parameter-file scanner."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from deploy_kit.convert.options import BatchRange, InputShape, parse_input_shape, parse_size, parse_target_sms
from deploy_kit.paddleseg.deploy_config import resize_target_hw
from deploy_kit.errors import ConfigError
from deploy_kit.paddleseg.pdiparams import compress_to_fp16, restore_from_fp16, scan


def test_option_parsers():
    assert BatchRange.parse("1:2:8") == BatchRange(1, 2, 8)
    assert BatchRange.parse("4") == BatchRange(4, 4, 4)
    assert parse_input_shape("1,3,512,1024") == InputShape(1, (512, 512, 512), (1024, 1024, 1024))
    ranged = parse_input_shape("1,3,256:512:1024,256:1024:2048")
    assert ranged == InputShape(1, (256, 512, 1024), (256, 1024, 2048)) and not ranged.fixed
    assert ranged.opt_hw == (512, 1024)
    assert parse_size("2GiB") == 2 << 30 and parse_size("512MiB") == 512 << 20 and parse_size("1000") == 1000
    assert parse_target_sms("8.7, 8.6") == ("8.7", "8.6")
    for bad in (lambda: BatchRange.parse("2:1:4"), lambda: parse_input_shape("1,1,64,64"),
                lambda: parse_size("big"), lambda: parse_target_sms("sm87")):
        with pytest.raises(ConfigError):
            bad()


def test_resize_target_is_hw_from_paddleseg_wh():
    assert resize_target_hw(({"type": "Resize", "target_size": [1024, 512]}, {"type": "Normalize"})) == (512, 1024)
    assert resize_target_hw(({"type": "Resize", "target_size": [1024, 512], "keep_ratio": True},)) is None
    assert resize_target_hw(({"type": "Normalize"},)) is None


def _tensor(dtype_code: int, dims: list[int], payload: bytes) -> bytes:
    desc = bytes([0x08, dtype_code]) + b"".join(bytes([0x10, d]) for d in dims)
    return struct.pack("<IQIi", 0, 0, 0, len(desc)) + desc + payload


def test_pdiparams_scan_and_fp16_round_trip(tmp_path: Path):
    weights = np.arange(6, dtype=np.float32) / 4
    counts = np.array([3, 4], dtype=np.int64)
    path = tmp_path / "model.pdiparams"
    path.write_bytes(_tensor(5, [2, 3], weights.tobytes()) + _tensor(3, [2], counts.tobytes()))
    records = scan(path)
    assert [(r.dtype_code, r.shape) for r in records] == [(5, (2, 3)), (3, (2,))]
    compress_to_fp16(path, tmp_path / "packed.npz")
    restore_from_fp16(tmp_path / "packed.npz", tmp_path / "restored.pdiparams")
    assert (tmp_path / "restored.pdiparams").read_bytes() == path.read_bytes()  # values exact in fp16
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ConfigError, match="truncated"):
        scan(path)
