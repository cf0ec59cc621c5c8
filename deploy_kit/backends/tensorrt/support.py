"""Which TensorRT release runs on which GPU, and whether a built engine can run on this one.

The facts (compute capabilities per release, the cuDNN each expects, the minimum driver per CUDA version)
live in `support.json`, each row with its source; the rules here are pure functions of them.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

from ...machine import GpuInfo


@functools.lru_cache(maxsize=1)
def support_table() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("support.json").read_text())


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def in_range(version: str, row: dict[str, Any]) -> bool:
    major_minor = version_tuple(version)[:2]
    return version_tuple(row["from"]) <= major_minor <= version_tuple(row["to"])


def supported_sms(flavor: str, version: str) -> tuple[list[str], str] | None:
    """(compute capabilities, source) of the table row for this TensorRT release, or None if unknown."""
    for row in support_table()["compute_capabilities"]:
        if row["flavor"] == flavor and in_range(version, row):
            return row["sms"], row["source"]
    return None


def engine_problems(meta: dict[str, Any], flavor: str | None, version: str | None,
                    gpu: GpuInfo | None) -> tuple[list[str], bool]:
    """Why the engine described by `meta` cannot run on `gpu` with the installed TensorRT ([] if it can),
    and whether that TensorRT could never run on this GPU (so a rebuild would not help)."""
    problems = []
    if flavor != meta.get("flavor") or version != meta.get("tensorrt_version"):
        problems.append(f"built by {meta.get('flavor')} {meta.get('tensorrt_version')}, installed: "
                        f"{flavor or 'no TensorRT'} {version or ''}".strip())
    if gpu is None:
        return problems + ["no GPU to run it on"], True
    hopeless = flavor is None
    support = supported_sms(flavor, str(version)) if flavor else None
    targets = meta.get("target_compute_capabilities", [])
    if support and gpu.compute_capability not in support[0]:
        problems.append(f"{flavor} {version} does not support SM {gpu.compute_capability} ({gpu.name}); "
                        f"it runs on SM {', '.join(support[0])}")
        hopeless = True
    elif gpu.compute_capability not in targets:
        problems.append(f"built for SM {', '.join(targets)}, this GPU is SM {gpu.compute_capability}")
    return problems, hopeless
