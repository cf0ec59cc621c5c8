"""ONNX Runtime's CUDA execution provider on the runtime's own device buffers and stream.

Inputs and outputs are bound by device pointer (I/O binding), the provider computes on the stream the
runtime passes (`user_compute_stream`), and runs do not synchronize, so pre- and post-processing
kernels and copies queue around inference on one stream with no host round trip.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnx

from ...artifact import Artifact
from ...cuda import Stream
from ...errors import EngineCompatibilityError
from ...fileio import atomic_output, cache_root, sha256_file
from ...machine import GpuInfo
from ..base import DeviceBackend, DeviceExecutor, OpenRequest, Verdict, gpu_at
from .cpu import onnx_tensor_spec, quiet_session_options

log = logging.getLogger(__name__)


def cuda_provider_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


class OnnxRuntimeCudaExecutor(DeviceExecutor):
    """One ONNX Runtime CUDA session per batch size used, each on a copy of the graph with that batch
    fixed: ONNX Runtime then folds the shape arithmetic it would otherwise run on the CPU, so every node
    runs on the GPU and the session captures itself as a CUDA graph on the runtime's stream and replays
    it (the bound buffers never move). A graph ONNX Runtime cannot capture runs without one."""

    name = "onnxruntime-cuda"
    captures_itself = True

    def __init__(self, onnx_path: Path, device_index: int, stream: Stream, cuda_graphs: bool = True) -> None:
        import onnxruntime as ort

        self.onnx_path, self.device_index, self.stream, self.cuda_graphs = onnx_path, device_index, stream, cuda_graphs
        model = onnx.load(str(onnx_path), load_external_data=False)
        self.input = onnx_tensor_spec(model.graph.input[0])
        self.output = onnx_tensor_spec(model.graph.output[0])
        self._run_options = ort.RunOptions()
        # The runtime orders work on its stream itself; a sync per run would serialize the pipeline.
        self._run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        self._sessions: dict[int, Any] = {}
        self._bindings: dict[tuple[int, int, int], Any] = {}
        self.graph_replays: dict[int, bool] = {}  # batch -> whether its session replays a CUDA graph
        self._session(max(1, self.input.shape[0]))  # fails here, not mid-stream, when CUDA is unusable

    def _session(self, batch: int) -> Any:
        if batch not in self._sessions:
            graph = static_batch_graph(self.onnx_path, batch)
            session = self._open(graph, self.cuda_graphs)
            self.graph_replays[batch] = self.cuda_graphs and session is not None
            self._sessions[batch] = session if session is not None else self._open(graph, False)
        return self._sessions[batch]

    def _open(self, graph: Path, cuda_graph: bool) -> Any:
        import onnxruntime as ort

        options = {"device_id": self.device_index, "user_compute_stream": str(self.stream.ptr),
                   "cudnn_conv_algo_search": "HEURISTIC", "enable_cuda_graph": "1" if cuda_graph else "0"}
        try:
            session = ort.InferenceSession(str(graph), quiet_session_options(),
                                           providers=[("CUDAExecutionProvider", options)])
        except Exception as exc:  # ONNX Runtime raises plain RuntimeErrors (Fail, InvalidArgument, ...)
            if cuda_graph:
                log.info("ONNX Runtime cannot capture %s as a CUDA graph (%s); running it without", graph.name,
                         str(exc).splitlines()[0])
                return None
            raise EngineCompatibilityError("ONNX Runtime could not open the graph on CUDA", path=graph,
                                           note=str(exc).splitlines()[0]) from None
        if "CUDAExecutionProvider" not in session.get_providers():
            raise EngineCompatibilityError("ONNX Runtime could not start its CUDA provider", path=graph,
                                           hint="install onnxruntime-gpu matching your CUDA, or use --backend onnxruntime-cpu")
        return session

    def _binding(self, input_ptr: int, output_ptr: int, batch: int) -> Any:
        key = (input_ptr, output_ptr, batch)
        if key not in self._bindings:
            binding = self._session(batch).io_binding()
            binding.bind_input(self.input.name, "cuda", self.device_index, self.input.dtype,
                               (batch, *self.input.shape[1:]), input_ptr)
            binding.bind_output(self.output.name, "cuda", self.device_index, self.output.dtype,
                                self.output_shape(batch), output_ptr)
            self._bindings[key] = binding
        return self._bindings[key]

    def enqueue(self, input_ptr: int, output_ptr: int, batch: int, stream: Stream) -> None:
        if stream is not self.stream:
            raise ValueError("this ONNX Runtime session computes on the stream it was created with")
        self._session(batch).run_with_iobinding(self._binding(input_ptr, output_ptr, batch), self._run_options)

    def close(self) -> None:
        self._bindings.clear()
        self._sessions.clear()  # the sessions' CUDA memory goes now, while the context lives


def static_batch_graph(onnx_path: Path, batch: int) -> Path:
    """A copy of the graph with its batch dimension fixed to `batch`, cached beside other runtime files."""
    digest = sha256_file(onnx_path)[:16]
    path = cache_root() / "onnxruntime" / f"{onnx_path.stem}-{digest}-batch{batch}.onnx"
    if path.is_file():
        return path
    model = onnx.load(str(onnx_path))
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    del model.graph.value_info[:]  # inferred shapes of the dynamic batch; ONNX Runtime infers them anew
    with atomic_output(path) as tmp:
        onnx.save(model, str(tmp))
    return path


class OnnxRuntimeCudaBackend(DeviceBackend):
    name = "onnxruntime-cuda"

    def check(self, artifact: Artifact, gpus: tuple[GpuInfo, ...], device: int) -> Verdict:
        gpu = gpu_at(gpus, device)
        if gpu is None:
            return Verdict(False, "no CUDA GPU found")
        if not cuda_provider_available():
            return Verdict(False, "onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        return Verdict(True, f"ONNX Runtime CUDA on {gpu.name}")

    def open(self, artifact: Artifact, request: OpenRequest, stream: Stream) -> OnnxRuntimeCudaExecutor:
        return OnnxRuntimeCudaExecutor(artifact.graph(request.precision), request.device, stream)

    def hint(self) -> str:
        return "use --backend onnxruntime-cpu"
