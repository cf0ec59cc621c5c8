"""Reading a saved Paddle program for what conversion needs to know, and the program rewrites that work
around known paddle2onnx quirks.

Paddle 3 saves PIR programs as JSON (`model.json`): every op is an object whose "#" names it
("1.pool2d") and whose "A" lists its attributes as {"N": name, "AT": {"#": type, "D": value}}.
Paddle 2's protobuf `model.pdmodel` is read through Paddle's own ProgramDesc when Paddle is installed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import ConfigError

# Every PaddleSeg backbone downsamples by 32 at most, so a fully convolutional model takes H, W that are
# multiples of 32 without changing what it computes.
STRIDE = 32


@dataclass(frozen=True)
class ProgramFacts:
    """What the program holds that decides how it can be exported."""

    adaptive_bins: tuple[int, ...]  # output sizes (> 1) of adaptive pools; 1x1 is a global pool

    @property
    def needs_static_hw(self) -> bool:
        """paddle2onnx exports an adaptive pool with bins > 1 only at a fixed input size."""
        return bool(self.adaptive_bins)

    @property
    def hw_multiple(self) -> int:
        """H and W must divide by this for the stride-32 feature map to split evenly into every bin."""
        return STRIDE * math.lcm(*self.adaptive_bins) if self.adaptive_bins else STRIDE


def _ops(node: Any) -> Iterator[dict[str, Any]]:
    """Every op object of a PIR JSON document, depth first."""
    if isinstance(node, dict):
        if isinstance(node.get("#"), str) and isinstance(node.get("A"), list):
            yield node
        for value in node.values():
            yield from _ops(value)
    elif isinstance(node, list):
        for value in node:
            yield from _ops(value)


def _attributes(op: dict[str, Any]) -> dict[str, Any]:
    return {str(a.get("N")): a.get("AT", {}) for a in op["A"] if isinstance(a, dict)}


def _value(attribute: dict[str, Any]) -> Any:
    data = attribute.get("D")
    if isinstance(data, list):
        return [item.get("D") if isinstance(item, dict) else item for item in data]
    return data


def read_program(model_file: Path) -> dict[str, Any]:
    try:
        document = json.loads(model_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("the Paddle program is not valid JSON", path=model_file, note=str(exc).splitlines()[0],
                          hint="re-export the model with PaddleSeg's tools/export.py") from None
    if not isinstance(document, dict):
        raise ConfigError("the Paddle program is not a JSON object", path=model_file,
                          hint="re-export the model with PaddleSeg's tools/export.py")
    return document


def program_facts(model_file: Path) -> ProgramFacts:
    """Facts of a PIR JSON program; a protobuf program (Paddle 2) is read with Paddle's ProgramDesc."""
    if model_file.suffix != ".json":
        return _protobuf_facts(model_file)
    bins: set[int] = set()
    for op in _ops(read_program(model_file)):
        if op["#"].endswith(("pool2d", "pool3d")):
            attributes = _attributes(op)
            if _value(attributes.get("adaptive", {})) is True:
                bins.update(int(b) for b in _pool_bins(op, attributes) if int(b) > 1)
    return ProgramFacts(tuple(sorted(bins)))


def _pool_bins(op: dict[str, Any], attributes: dict[str, Any]) -> list[int]:
    """An adaptive pool's output size: the `kernel_size` attribute, or (PIR) the op's output dims."""
    kernel = _value(attributes.get("kernel_size", {}))
    if isinstance(kernel, list) and kernel:
        return [int(k) for k in kernel if isinstance(k, int)]
    outputs = op.get("O") or []
    dims = outputs[0].get("TT", {}).get("D", [None, []])[1] if outputs and isinstance(outputs[0], dict) else []
    return [int(d) for d in dims[-2:] if isinstance(d, int) and d > 0] or [2]  # unknown: assume it needs static


def _protobuf_facts(model_file: Path) -> ProgramFacts:
    try:
        from paddle.base.proto import framework_pb2
    except ImportError:
        raise ConfigError("reading a Paddle 2 program needs Paddle", path=model_file,
                          hint="pip install 'deploy-kit[export]'") from None
    program = framework_pb2.ProgramDesc()  # type: ignore[attr-defined]
    try:
        program.ParseFromString(model_file.read_bytes())
    except Exception as exc:  # protobuf's DecodeError, whose module path differs between versions
        raise ConfigError("the Paddle program cannot be parsed", path=model_file, note=str(exc),
                          hint="re-export the model with PaddleSeg's tools/export.py") from None
    bins: set[int] = set()
    for block in program.blocks:
        for op in block.ops:
            attributes = {a.name: a for a in op.attrs}
            if op.type.startswith("pool") and "adaptive" in attributes and attributes["adaptive"].b:
                bins.update(int(b) for b in attributes["ksize"].ints if b > 1)
    return ProgramFacts(tuple(sorted(bins)))


# --- program rewrites -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rewrite:
    """A change to a PIR JSON program that paddle2onnx needs and that does not change what it computes."""

    name: str
    works_around: str  # the paddle2onnx behaviour, so the rewrite can go when paddle2onnx fixes it
    apply: Callable[[dict[str, Any]], int]  # edits the document in place; returns how many places


def _float64_array_attributes_to_float32(document: dict[str, Any]) -> int:
    changed = 0
    for op in _ops(document):
        if not op["#"].endswith("_interp"):
            continue
        for attribute in op["A"]:
            data = attribute.get("AT", {}) if isinstance(attribute, dict) else {}
            if data.get("#") == "0.a_array" and isinstance(data.get("D"), list):
                for item in data["D"]:
                    if isinstance(item, dict) and item.get("#") == "0.a_f64":
                        item["#"] = "0.a_f32"
                        changed += 1
    return changed


REWRITES = (
    Rewrite("interp-scale-float32",
            "paddle2onnx 2.1 aborts on an interpolate op whose `scale` holds float64 values ('the 0th elementwise "
            "MUST be ir::FloatAttribute', pir_parser.cc:814), as F.interpolate(scale_factor=0.5) saves them "
            "(PP-MobileSeg); the kernel reads them as float32 anyway",
            _float64_array_attributes_to_float32),
)


def rewrite_program(model_file: Path, out: Path) -> list[str]:
    """Writes `model_file` with every rewrite applied to `out`; returns the names of those that changed it
    (a protobuf program is copied unchanged)."""
    if model_file.suffix != ".json":
        out.write_bytes(model_file.read_bytes())
        return []
    document = read_program(model_file)
    applied = [rewrite.name for rewrite in REWRITES if rewrite.apply(document)]
    out.write_text(json.dumps(document, separators=(",", ":")) if applied else model_file.read_text())
    return applied
