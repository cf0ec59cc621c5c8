"""The one small interface every executor implements.

Device executors (TensorRT, ONNX Runtime CUDA) take device pointers and enqueue work on the runtime's
stream without synchronizing; the host executor (ONNX Runtime CPU) takes and returns numpy arrays.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from .cuda import Stream


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # with -1 for the batch


class DeviceExecutor(abc.ABC):
    """Runs a model on device buffers on a given stream."""

    name: str
    input: TensorSpec
    output: TensorSpec
    capturable = False  # whether enqueue() may be captured into a CUDA graph

    def output_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.output.shape[1:])

    @abc.abstractmethod
    def enqueue(self, input_ptr: int, output_ptr: int, batch: int, stream: Stream) -> None:
        """Queues one inference of `batch` images; returns before it finishes."""

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
