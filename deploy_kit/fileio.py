"""Atomic file output, content hashing and the cache folder, shared by every layer."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
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


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
