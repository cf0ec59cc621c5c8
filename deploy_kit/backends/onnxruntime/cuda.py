"""ONNX Runtime's CUDA execution provider on the runtime's own device buffers and stream.

Inputs and outputs are bound by device pointer (I/O binding), the provider computes on the stream the
runtime passes (`user_compute_stream`), and runs do not synchronize, so pre- and post-processing
kernels and copies queue around inference on one stream with no host round trip.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path
from typing import Any

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
    """ONNX Runtime CUDA sessions on copies of the graph with the input shape fixed: ONNX Runtime then
    folds the shape arithmetic it would otherwise run on the CPU, so every node runs on the GPU and the
    session captures itself as a CUDA graph on the runtime's stream and replays it (the bound buffers
    never move). A graph ONNX Runtime cannot capture runs without one.

    A fixed-size model gets one such session per batch size. A dynamic-shape model runs every shape on
    one dynamic-shape session; a shape that runs `static_after` times in a row gets a static session of
    its own (at most `static_shapes` of them, the least recently used closed first), so a folder of one
    size or a video replays CUDA graphs while a folder of mixed sizes makes no session per size."""

    name = "onnxruntime-cuda"
    captures_itself = True
    static_after = 3
    static_shapes = 2
    # How cuDNN picks each convolution's algorithm. A static-shape session plans once: EXHAUSTIVE (timing
    # them) ran PP-LiteSeg-T 512x1024 FP32 in 2.74 ms where HEURISTIC took 8.60 (H200). The dynamic-shape
    # session plans again at every new shape, which EXHAUSTIVE makes seconds long: HEURISTIC there.
    static_conv_algo_search, dynamic_conv_algo_search = "EXHAUSTIVE", "HEURISTIC"
    provider_options: dict[str, str] = {}  # more CUDA provider options (benchmarks compare them)

    def __init__(self, onnx_path: Path, device_index: int, stream: Stream, cuda_graphs: bool = True) -> None:
        import onnxruntime as ort

        # ONNX Runtime 1.31 warns "No registered plugin EP device found for 'CUDAExecutionProvider'" on every
        # session given provider options, through its default logger, before session options apply.
        ort.set_default_logger_severity(0 if log.isEnabledFor(logging.DEBUG) else 3)
        self.onnx_path, self.device_index, self.stream, self.cuda_graphs = onnx_path, device_index, stream, cuda_graphs
        import onnx

        model = onnx.load(str(onnx_path), load_external_data=False)
        self.input = onnx_tensor_spec(model.graph.input[0])
        self.output = onnx_tensor_spec(model.graph.output[0])
        self._run_options = ort.RunOptions()
        # The runtime orders work on its stream itself; a sync per run would serialize the pipeline.
        self._run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        self._sessions: collections.OrderedDict[tuple[int, ...], Any] = collections.OrderedDict()
        self._dynamic: Any = None
        self._run: tuple[tuple[int, ...] | None, int] = (None, 0)  # the last shape, and how many times in a row
        self._bindings: collections.OrderedDict[tuple[Any, ...], Any] = collections.OrderedDict()
        self.graph_replays: dict[tuple[int, ...], bool] = {}  # static shape -> whether its session replays a CUDA graph
        if self.input.fixed_hw is None:
            self._dynamic = self._open(onnx_path, False, self.dynamic_conv_algo_search)  # fails here, not mid-stream, when CUDA is unusable
        else:
            self._session((max(1, self.input.shape[0]), *self.input.shape[1:]))

    def _session(self, shape: tuple[int, ...]) -> Any:
        """The session that runs `shape`: its static one, or the dynamic one until the shape repeats."""
        if shape in self._sessions:
            self._sessions.move_to_end(shape)
            return self._sessions[shape]
        if self._dynamic is not None:
            last, count = self._run
            self._run = (shape, count + 1 if shape == last else 1)
            if not self.static_after or self._run[1] < self.static_after:
                return self._dynamic
        graph = static_shape_graph(self.onnx_path, shape)
        session = self._open(graph, self.cuda_graphs, self.static_conv_algo_search)
        self.graph_replays[shape] = self.cuda_graphs and session is not None
        self._sessions[shape] = session if session is not None else self._open(graph, False, self.static_conv_algo_search)
        if self._dynamic is not None and len(self._sessions) > self.static_shapes:
            evicted, _ = self._sessions.popitem(last=False)  # its CUDA memory goes with it
            self._bindings = collections.OrderedDict((k, v) for k, v in self._bindings.items() if k[2] != evicted)
        return self._sessions[shape]

    def _open(self, graph: Path, cuda_graph: bool, conv_algo_search: str) -> Any:
        import onnxruntime as ort

        options = {"device_id": self.device_index, "user_compute_stream": str(self.stream.ptr),
                   "cudnn_conv_algo_search": conv_algo_search, "enable_cuda_graph": "1" if cuda_graph else "0",
                   # grow the arena by what a new input size needs, not to the next power of two
                   "arena_extend_strategy": "kSameAsRequested",
                   # FP32 means FP32, as Paddle computes it: TF32 convolutions changed 0.07% of a random-weight
                   # UNet's labels (measured, H200); FP16 and INT8 are the precisions that trade accuracy
                   "use_tf32": "0", **self.provider_options}
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

    def _binding(self, session: Any, input_ptr: int, output_ptr: int, shape: tuple[int, ...]) -> Any:
        key = (input_ptr, output_ptr, shape, id(session))
        if key not in self._bindings:
            binding = session.io_binding()
            binding.bind_input(self.input.name, "cuda", self.device_index, self.input.dtype, shape, input_ptr)
            binding.bind_output(self.output.name, "cuda", self.device_index, self.output.dtype,
                                self.output_shape(shape), output_ptr)
            self._bindings[key] = binding
            while len(self._bindings) > 64:  # mixed sizes: bindings of sizes long gone
                self._bindings.popitem(last=False)
        return self._bindings[key]

    def enqueue(self, input_ptr: int, output_ptr: int, input_shape: tuple[int, ...], stream: Stream) -> None:
        if stream is not self.stream:
            raise ValueError("this ONNX Runtime session computes on the stream it was created with")
        shape = tuple(int(d) for d in input_shape)
        session = self._session(shape)
        session.run_with_iobinding(self._binding(session, input_ptr, output_ptr, shape), self._run_options)

    def buffers_moved(self) -> None:
        """A static session replays the CUDA graph it captured on the old buffers' addresses: they are
        dropped, and made again when their shape runs (repeats, for a dynamic model) on the new buffers."""
        self._sessions.clear()
        self._run = (None, 0)
        self._bindings.clear()

    def close(self) -> None:
        self._bindings.clear()
        self._sessions.clear()  # the sessions' CUDA memory goes now, while the context lives
        self._dynamic = None


def static_shape_graph(onnx_path: Path, shape: tuple[int, ...]) -> Path:
    """A copy of the graph with its input fixed to `shape` (NCHW), cached beside other runtime files."""
    digest = sha256_file(onnx_path)[:16]
    path = cache_root() / "onnxruntime" / f"{onnx_path.stem}-{digest}-{'x'.join(map(str, shape))}.onnx"
    if path.is_file():
        return path
    import onnx

    model = onnx.load(str(onnx_path))
    for dim, size in zip(model.graph.input[0].type.tensor_type.shape.dim, shape):
        dim.Clear()
        dim.dim_value = size
    for value in model.graph.output:  # the batch; ONNX Runtime infers dynamic H and W from the input
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = shape[0]
    del model.graph.value_info[:]  # inferred shapes of the dynamic graph; ONNX Runtime infers them anew
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
