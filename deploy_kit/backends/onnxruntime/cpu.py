"""ONNX Runtime on the CPU: the backend that runs anywhere, and the executor the accuracy checks use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...artifact import Artifact
from ...machine import GpuInfo
from ..base import HostBackend, HostExecutor, OpenRequest, TensorSpec, Verdict

if TYPE_CHECKING:
    import onnx

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32,
              "tensor(int64)": np.int64}


def quiet_session_options():  # type: ignore[no-untyped-def]
    """Session options that keep ONNX Runtime's placement notes out of the user's terminal (errors still show)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Decode and write threads share the cores with inference: idle ORT threads must sleep, not spin.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # ONNX Runtime sizes its pool to the machine's cores; a process given fewer (Ray sets OMP_NUM_THREADS to
    # an actor's CPUs, as does a user sharing a machine) would oversubscribe them.
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        options.intra_op_num_threads = int(threads)
    return options


def tensor_spec(arg) -> TensorSpec:  # type: ignore[no-untyped-def]
    shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
    return TensorSpec(arg.name, np.dtype(_ORT_TYPES[arg.type]), shape)


def onnx_tensor_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    """The spec of a graph input or output, read from the ONNX graph (-1 where a dim is symbolic)."""
    tensor = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
    from onnx.helper import tensor_dtype_to_np_dtype  # onnx takes 60 ms to import: not for `infer` on the CPU

    return TensorSpec(value.name, np.dtype(tensor_dtype_to_np_dtype(tensor.elem_type)), dims)


class OnnxRuntimeCpuExecutor(HostExecutor):
    name = "onnxruntime-cpu"

    def __init__(self, onnx_path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_path), quiet_session_options(), providers=["CPUExecutionProvider"])
        self.input = tensor_spec(self.session.get_inputs()[0])
        self.output = tensor_spec(self.session.get_outputs()[0])

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output.name], {self.input.name: batch.astype(self.input.dtype, copy=False)})[0]


class OnnxRuntimeCpuBackend(HostBackend):
    name = "onnxruntime-cpu"

    def check(self, artifact: Artifact, gpus: tuple[GpuInfo, ...], device: int) -> Verdict:
        return Verdict(True, "ONNX Runtime on the CPU")

    def default_precision(self, artifact: Artifact) -> str:
        return "fp32"  # the CPU emulates FP16 and runs INT8 Q/DQ slower than FP32

    def open(self, artifact: Artifact, request: OpenRequest) -> OnnxRuntimeCpuExecutor:
        return OnnxRuntimeCpuExecutor(artifact.graph(request.precision))
