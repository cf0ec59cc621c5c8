"""What every backend is: a name in the registry, a verdict on whether it can run a convert output on this
machine (and why not), and `open()`, which gives the executor the runtime drives.

Device executors (TensorRT, ONNX Runtime CUDA) take device pointers and enqueue work on the runtime's
stream without synchronizing; host executors (ONNX Runtime CPU) take and return numpy arrays.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifact import Artifact
from ..cuda import Stream
from ..machine import GpuInfo


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # with -1 for the batch (and H and W of a dynamic-shape model)

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """H and W of an NCHW input that takes one size, None when it takes any (dynamic-shape model)."""
        height, width = self.shape[2:4]
        return None if height < 0 or width < 0 else (height, width)


class DeviceExecutor(abc.ABC):
    """Runs a model on device buffers on a given stream."""

    name: str
    input: TensorSpec
    output: TensorSpec
    capturable = False  # whether enqueue() may be captured into a CUDA graph
    captures_itself = False  # whether the executor captures and replays its own CUDA graphs

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The first output's shape for an NCHW input of `input_shape`: its batch, and where H and W are
        dynamic, the input's (PaddleSeg models give scores at their input's size)."""
        dims = [input_shape[0], *self.output.shape[1:]]
        for axis in (-2, -1):
            if dims[axis] < 0:
                dims[axis] = input_shape[axis]
        if any(d < 0 for d in dims):
            raise ValueError(f"output {self.output.name} has dynamic dims {self.output.shape} besides batch, H and W")
        return tuple(dims)

    @abc.abstractmethod
    def enqueue(self, input_ptr: int, output_ptr: int, input_shape: tuple[int, ...], stream: Stream) -> None:
        """Queues one inference of an NCHW input of `input_shape`; returns before it finishes."""

    def buffers_moved(self) -> None:
        """The runtime reallocated the input and output buffers: what captured their old addresses (CUDA
        graphs) must not run again."""

    def close(self) -> None:
        """Releases the executor's resources (idempotent)."""


class HostExecutor(abc.ABC):
    name: str
    input: TensorSpec
    output: TensorSpec

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """The model output for an NCHW batch."""

    def close(self) -> None:
        """Releases the executor's resources (idempotent)."""


@dataclass(frozen=True)
class Verdict:
    """Whether a backend can run a convert output here, and why (or why not) in a few words."""

    usable: bool
    reason: str
    engine: Path | None = None  # the engine it would run (TensorRT)
    rebuild: bool = False  # usable once the engine is rebuilt for this GPU from the ONNX beside it


@dataclass(frozen=True)
class OpenRequest:
    """How to open a backend: the graph precision (ONNX Runtime), the GPU (device backends), and the
    engine to load when it is not the convert output's own (a rebuilt one)."""

    precision: str
    device: int = 0
    engine: Path | None = None


class Backend(abc.ABC):
    """One way to run a converted model. Adding one is a module under `backends/` and a registry entry."""

    name: str  # what --backend takes
    on_gpu: bool

    @abc.abstractmethod
    def check(self, artifact: Artifact, gpus: tuple[GpuInfo, ...], device: int) -> Verdict:
        """Can this backend run `artifact` on GPU `device` of `gpus` (or the CPU)? Reads, never builds."""

    def default_precision(self, artifact: Artifact) -> str:
        """The graph to run when the user names none: the converted precision."""
        return artifact.precision

    def hint(self) -> str:
        """What to do when this backend was asked for by name and cannot run."""
        return "use --backend auto"


class HostBackend(Backend):
    """Runs on the CPU from numpy arrays."""

    on_gpu = False

    @abc.abstractmethod
    def open(self, artifact: Artifact, request: OpenRequest) -> HostExecutor:
        """The executor."""


class DeviceBackend(Backend):
    """Runs on a GPU from device buffers, on the stream of the runtime session that opens it."""

    on_gpu = True

    @abc.abstractmethod
    def open(self, artifact: Artifact, request: OpenRequest, stream: Stream) -> DeviceExecutor:
        """The executor, enqueuing on `stream`."""


def gpu_at(gpus: tuple[GpuInfo, ...], device: int) -> GpuInfo | None:
    return gpus[device] if 0 <= device < len(gpus) else None
