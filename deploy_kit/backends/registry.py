"""The backends in `auto` order, and the choice among them: the first that can run the model here,
with the reasons the ones before it could not. The CLI, eval and the benchmark read their choices here."""

from __future__ import annotations

from dataclasses import dataclass

from ..artifact import Artifact
from ..errors import ConfigError, EngineCompatibilityError
from ..machine import GpuInfo
from .base import Backend, Verdict
from .onnxruntime.cpu import OnnxRuntimeCpuBackend
from .onnxruntime.cuda import OnnxRuntimeCudaBackend
from .tensorrt import TensorRTBackend

AUTO = "auto"
BACKENDS: tuple[Backend, ...] = (
    TensorRTBackend("tensorrt", "tensorrt", "TensorRT"),
    TensorRTBackend("tensorrt-rtx", "tensorrt_rtx", "TensorRT-RTX"),
    OnnxRuntimeCudaBackend(),
    OnnxRuntimeCpuBackend(),
)


HELP = ("what runs the model; auto takes the first of " + ", ".join(b.name for b in BACKENDS)
        + " that works here and says why")


def names() -> tuple[str, ...]:
    """What --backend takes: auto, then every backend in auto order."""
    return (AUTO, *(b.name for b in BACKENDS))


def get(name: str) -> Backend:
    for backend in BACKENDS:
        if backend.name == name:
            return backend
    raise ConfigError(f"unknown backend {name!r}", hint=f"use one of {', '.join(names())}")


@dataclass(frozen=True)
class Choice:
    backend: Backend
    verdict: Verdict
    reason: str  # the verdict's reason, after why the backends before it were passed over


def choose(artifact: Artifact, wanted: str, gpus: tuple[GpuInfo, ...], device: int) -> Choice:
    """The first backend that can run `artifact` here (`auto`), or the one asked for; each choice says why."""
    candidates = BACKENDS if wanted == AUTO else (get(wanted),)
    passed_over: list[str] = []
    for backend in candidates:
        verdict = backend.check(artifact, gpus, device)
        if verdict.usable:
            return Choice(backend, verdict, "; ".join(dict.fromkeys([*passed_over, verdict.reason])))
        passed_over.append(verdict.reason)
    backend = candidates[-1]
    raise EngineCompatibilityError(f"cannot run the {backend.name} backend", path=artifact.folder,
                                   note="; ".join(passed_over), hint=backend.hint())
