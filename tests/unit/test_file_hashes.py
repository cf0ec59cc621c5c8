"""The SHA-256 memo of large files: hits only while the file's stat is unchanged, computed anew for a
file rewritten behind it, and a damaged memo is no memo."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from deploy_kit import fileio


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEPLOY_KIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _settled_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    time.sleep(fileio.MEMO_SETTLED_NS / 1e9 + 0.1)  # past the window in which a change may not show in the stat
    return path


def test_a_settled_large_file_is_hashed_once_and_remembered(cache: Path, tmp_path: Path):
    data = os.urandom(fileio.MEMO_MIN_BYTES + 1)
    model = _settled_file(tmp_path / "model.pdiparams", data)
    assert fileio.sha256_file(model) == hashlib.sha256(data).hexdigest()
    memo = json.loads((cache / "file-hashes.json").read_text())
    assert memo[str(model.resolve())][1] == hashlib.sha256(data).hexdigest()
    memo[str(model.resolve())][1] = "0" * 64  # what the next call answers if it reads the memo, not the file
    (cache / "file-hashes.json").write_text(json.dumps(memo))
    assert fileio.sha256_file(model) == "0" * 64


def test_a_file_rewritten_with_its_size_and_mtime_kept_is_hashed_again(cache: Path, tmp_path: Path):
    model = _settled_file(tmp_path / "model.onnx", os.urandom(fileio.MEMO_MIN_BYTES))
    fileio.sha256_file(model)
    before = model.stat()
    changed = os.urandom(fileio.MEMO_MIN_BYTES)
    model.write_bytes(changed)
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))  # what `cp -p` or an unpacked archive does
    assert fileio.sha256_file(model) == hashlib.sha256(changed).hexdigest()


def test_a_freshly_written_file_is_not_remembered(cache: Path, tmp_path: Path):
    model = tmp_path / "model.json"
    model.write_bytes(os.urandom(fileio.MEMO_MIN_BYTES))
    fileio.sha256_file(model)
    assert not (cache / "file-hashes.json").exists()


@pytest.mark.parametrize("memo", [b"\xff\xfe garbage", b"[1, 2]", b"[" * 100_000, b'{"x": 3}', b""])
def test_a_damaged_memo_is_no_memo(cache: Path, tmp_path: Path, memo: bytes):
    cache.mkdir()
    data = os.urandom(fileio.MEMO_MIN_BYTES)
    model = tmp_path / "model.pdiparams"
    model.write_bytes(data)
    (cache / "file-hashes.json").write_bytes(memo.replace(b"x", str(model.resolve()).encode()))
    assert fileio.sha256_file(model) == hashlib.sha256(data).hexdigest()
