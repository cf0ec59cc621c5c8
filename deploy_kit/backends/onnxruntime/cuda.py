"""ONNX Runtime's CUDA execution provider on the runtime's own device buffers and stream.

Inputs and outputs are bound by device pointer (I/O binding), the provider computes on the stream the
runtime passes (`user_compute_stream`), and runs do not synchronize, so pre- and post-processing
kernels and copies queue around inference on one stream with no host round trip.
"""

from __future__ import annotations

from pathlib import Path

from ...artifact import Artifact
from ...cuda import Stream
from ...errors import EngineCompatibilityError
from ...machine import GpuInfo
from ..base import DeviceBackend, DeviceExecutor, OpenRequest, Verdict, gpu_at
from .cpu import quiet_session_options, tensor_spec


def cuda_provider_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


class OnnxRuntimeCudaExecutor(DeviceExecutor):
    name = "onnxruntime-cuda"
    # Not capturable: ONNX Runtime places this graph's shape ops on the CPU, which a CUDA graph cannot hold.
    capturable = False

    def __init__(self, onnx_path: Path, device_index: int, stream: Stream) -> None:
        import onnxruntime as ort

        options = {"device_id": device_index, "user_compute_stream": str(stream.ptr),
                   "cudnn_conv_algo_search": "HEURISTIC"}
        self.session = ort.InferenceSession(str(onnx_path), quiet_session_options(), providers=[("CUDAExecutionProvider", options)])
        if "CUDAExecutionProvider" not in self.session.get_providers():
            raise EngineCompatibilityError("ONNX Runtime could not start its CUDA provider", path=onnx_path,
                                           hint="install onnxruntime-gpu matching your CUDA, or use --backend onnxruntime-cpu")
        self.device_index = device_index
        self.stream = stream
        self.input = tensor_spec(self.session.get_inputs()[0])
        self.output = tensor_spec(self.session.get_outputs()[0])
        self._run_options = ort.RunOptions()
        # The runtime orders work on its stream itself; a sync per run would serialize the pipeline.
        self._run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        self._bindings: dict[tuple[int, int, int], object] = {}

    def _binding(self, input_ptr: int, output_ptr: int, batch: int):  # type: ignore[no-untyped-def]
        key = (input_ptr, output_ptr, batch)
        if key not in self._bindings:
            binding = self.session.io_binding()
            binding.bind_input(self.input.name, "cuda", self.device_index, self.input.dtype,
                               (batch, *self.input.shape[1:]), input_ptr)
            binding.bind_output(self.output.name, "cuda", self.device_index, self.output.dtype,
                                self.output_shape(batch), output_ptr)
            self._bindings[key] = binding
        return self._bindings[key]

    def enqueue(self, input_ptr: int, output_ptr: int, batch: int, stream: Stream) -> None:
        if stream is not self.stream:
            raise ValueError("this ONNX Runtime session computes on the stream it was created with")
        self.session.run_with_iobinding(self._binding(input_ptr, output_ptr, batch), self._run_options)

    def close(self) -> None:
        self._bindings.clear()
        self.__dict__.pop("session", None)  # the session's CUDA memory goes now, while the context lives


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
