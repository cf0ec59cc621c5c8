"""Feature probes for the installed TensorRT flavour, done once and used by the code and the tests.

One code path serves `tensorrt` 8.6, 10.x, 11.x and `tensorrt_rtx`: every difference is a named feature
read off the module (`hasattr`), never a version-string comparison.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any

from ...artifact import ENGINE_NAMES

# Each flavour's module, then its bindings module: the wheels of the bindings alone (as on machines
# that install them without the meta-package) expose the same API under that name.
FLAVORS = {"tensorrt": ("tensorrt", "tensorrt_bindings"), "tensorrt_rtx": ("tensorrt_rtx", "tensorrt_rtx_bindings")}


@dataclass(frozen=True)
class TensorRTFeatures:
    """What the importable TensorRT module offers.

    Attributes:
        flavor: "tensorrt" or "tensorrt_rtx".
        precision_flags: weakly typed builder flags FP16/INT8 exist (8.6, 10); absent in 11 and RTX.
        strongly_typed_flag: networks can be created STRONGLY_TYPED (10+, RTX).
        explicit_batch_flag: networks must be created EXPLICIT_BATCH (8.x still has implicit batch).
        memory_pool_limit: `set_memory_pool_limit` replaces `max_workspace_size`.
        buildable_sms: compute capabilities the builder can target without that GPU (RTX), else ().
        hardware_compatibility: engines can be built to run on every Ampere-or-newer GPU (8.6+).
    """

    flavor: str
    version: str
    module: Any = field(compare=False, repr=False)
    precision_flags: bool
    strongly_typed_flag: bool
    explicit_batch_flag: bool
    memory_pool_limit: bool
    buildable_sms: tuple[str, ...]
    hardware_compatibility: bool

    @property
    def engine_name(self) -> str:
        return ENGINE_NAMES[self.flavor]

    @property
    def fp16_needs_fp16_graph(self) -> bool:
        """Strongly typed TensorRT takes precision from the graph, so FP16 means an FP16 ONNX."""
        return not self.precision_flags


def _sm_from_enum(name: str) -> str | None:
    digits = name[2:] if name.startswith("SM") else ""
    return f"{digits[:-1]}.{digits[-1]}" if digits.isdigit() and len(digits) >= 2 else None


def features_of(module: Any, flavor: str) -> TensorRTFeatures:
    """Probes a loaded `tensorrt` or `tensorrt_rtx` module."""
    flag_names = set(dir(module.BuilderFlag))
    creation = set(dir(module.NetworkDefinitionCreationFlag))
    capability = getattr(module, "ComputeCapability", None)
    sms = tuple(s for s in (_sm_from_enum(n) for n in dir(capability)) if s) if capability else ()
    return TensorRTFeatures(
        flavor=flavor,
        version=str(module.__version__),
        module=module,
        precision_flags="FP16" in flag_names,
        strongly_typed_flag="STRONGLY_TYPED" in creation,
        explicit_batch_flag="EXPLICIT_BATCH" in creation and hasattr(module.Builder, "max_batch_size"),
        memory_pool_limit=hasattr(module.IBuilderConfig, "set_memory_pool_limit"),
        buildable_sms=tuple(sorted(sms, key=lambda s: tuple(int(p) for p in s.split(".")))),
        hardware_compatibility=hasattr(module, "HardwareCompatibilityLevel")
        and hasattr(module.HardwareCompatibilityLevel, "AMPERE_PLUS"),
    )


def _import_flavor(name: str) -> Any | None:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    # A type-stub package (tensorrt-stubs) makes `import tensorrt` succeed as an empty namespace.
    return module if hasattr(module, "Builder") and hasattr(module, "__version__") else None


def flavor_installed(flavor: str) -> bool:
    """Whether one of the flavour's modules is installed, found without importing it (a type-stub package
    is a namespace of .pyi files, with no module to load)."""
    for name in FLAVORS[flavor]:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin not in (None, "namespace"):
            return True
    return False


@functools.lru_cache(maxsize=None)
def probe_flavor(flavor: str) -> TensorRTFeatures | None:
    """The features of one flavour ("tensorrt" or "tensorrt_rtx"), or None when it does not import."""
    for name in FLAVORS[flavor]:
        module = _import_flavor(name)
        if module is not None:
            return features_of(module, flavor)
    return None


def probe_tensorrt(prefer: str | None = None) -> TensorRTFeatures | None:
    """The first importable flavour (`prefer` first, then full TensorRT, then TensorRT-RTX), or None."""
    order = ([prefer] if prefer else []) + [f for f in FLAVORS if f != prefer]
    return next((features for features in map(probe_flavor, order) if features is not None), None)
