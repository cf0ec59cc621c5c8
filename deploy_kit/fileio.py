"""Atomic file output, content hashing and the cache folder, shared by every layer."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator


def cache_root() -> Path:
    """deploy-kit's cache: $DEPLOY_KIT_CACHE, else $XDG_CACHE_HOME/deploy-kit, else ~/.cache/deploy-kit."""
    base = os.environ.get("DEPLOY_KIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deploy-kit"
    return Path(base)


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yields a temporary path beside `final`; renames it into place only if the block succeeds.

    A crash or error leaves neither a half-written `final` nor the temporary file behind.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(final: Path, data: bytes) -> Path:
    with atomic_output(final) as tmp:
        tmp.write_bytes(data)
    return final


def write_json_atomic(final: Path, payload: Any) -> Path:
    return write_bytes_atomic(final, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


# Files at least this large have their SHA-256 remembered (`sha256_file`), at most this many of them.
MEMO_MIN_BYTES = 1 << 20
MEMO_ENTRIES = 256
# A file changed this recently may change again within its file system's timestamp granularity without
# a visible stat change (git's "racily clean" entries): its hash is not remembered yet.
MEMO_SETTLED_NS = 2_000_000_000


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """The file's SHA-256, remembered in the cache by where the file is and its stat: device, inode, size,
    modification and change times. Every warm `infer` of a PaddleSeg export hashed its ~100 MB of model
    files to find its conversion up to date (0.11 s of CPU on 2 cores); a write to the file changes its
    change time, which no tool can set back."""
    stat = path.stat()
    if stat.st_size < MEMO_MIN_BYTES:
        return _sha256_of(path, chunk)
    key = str(path.resolve())
    stamp = [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
    memo = _hash_memo()
    known = memo.get(key)
    if isinstance(known, list) and len(known) == 2 and known[0] == stamp and isinstance(known[1], str):
        return known[1]
    digest = _sha256_of(path, chunk)
    if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) > MEMO_SETTLED_NS:
        memo.pop(key, None)
        memo[key] = [stamp, digest]
        _keep_hash_memo(dict(list(memo.items())[-MEMO_ENTRIES:]))
    return digest


def _sha256_of(path: Path, chunk: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_memo_path() -> Path:
    return cache_root() / "file-hashes.json"


def _hash_memo() -> dict[str, Any]:
    """The remembered hashes; an unreadable or malformed memo is an empty one (the hashes are computed)."""
    try:
        memo = json.loads(_hash_memo_path().read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _keep_hash_memo(memo: dict[str, Any]) -> None:
    """Writes the memo atomically; where the cache cannot be written, the hashes are just not remembered."""
    try:
        write_json_atomic(_hash_memo_path(), memo)
    except OSError:
        pass


def sha256_json(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
