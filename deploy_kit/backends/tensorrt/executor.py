"""TensorRT (`tensorrt` or `tensorrt_rtx`) on the runtime's device buffers: name-based tensor I/O,
input shape set per batch, `execute_async_v3` on the runtime's stream."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...cuda import DeviceBuffer, Stream
from ...errors import EngineCompatibilityError
from ..base import DeviceExecutor, TensorSpec
from .features import TensorRTFeatures
from .logger import make_logger

if TYPE_CHECKING:
    import tensorrt as trt


class TensorRTExecutor(DeviceExecutor):
    capturable = True  # execute_async_v3 is stream-ordered GPU work once shapes and addresses are set

    def __init__(self, engine_path: Path, features: TensorRTFeatures) -> None:
        api = features.module
        self.name = features.flavor
        self._features = features
        self._logger = make_logger(api)
        self._runtime: trt.Runtime | None = api.Runtime(self._logger)
        self.engine: trt.ICudaEngine | None = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        self.context: trt.IExecutionContext | None = None
        if self.engine is None:
            note = "; ".join(self._logger.errors[-2:]) or None
            self.close()
            raise EngineCompatibilityError("TensorRT could not deserialize the engine", path=engine_path, note=note,
                                           hint=f"rebuild it here: deploy-kit convert MODEL -o {engine_path.parent} --force")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == api.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == api.TensorIOMode.OUTPUT]
        self.input = self._spec(features, self.engine, inputs[0])
        self.output = self._spec(features, self.engine, outputs[0])  # the first, as PaddleSeg uses it
        # Every other output (Fast-SCNN's auxiliary head) still needs an address: scratch buffers, grown
        # on the first enqueue of a larger batch, which runs before any CUDA graph capture.
        self._scratch: dict[str, DeviceBuffer] = {name: DeviceBuffer(0) for name in outputs[1:]}

    @staticmethod
    def _spec(features: TensorRTFeatures, engine: trt.ICudaEngine, name: str) -> TensorSpec:
        shape = engine.get_tensor_shape(name)
        dtype = np.dtype(features.module.nptype(engine.get_tensor_dtype(name)))
        return TensorSpec(name, dtype, tuple(shape[i] for i in range(len(shape))))

    @property
    def released(self) -> bool:
        return self._runtime is None and self.engine is None and self.context is None

    def enqueue(self, input_ptr: int, output_ptr: int, input_shape: tuple[int, ...], stream: Stream) -> None:
        if self.context is None:
            raise EngineCompatibilityError("the TensorRT executor was closed", hint="open a new Segmenter")
        if not self.context.set_input_shape(self.input.name, input_shape):
            raise EngineCompatibilityError(f"input {'x'.join(map(str, input_shape))} is outside the engine's profile",
                                           note="; ".join(self._logger.errors[-1:]) or None,
                                           hint="re-convert with --shapes-from DIR, or infer with --crop-size W,H")
        self.context.set_tensor_address(self.input.name, input_ptr)
        self.context.set_tensor_address(self.output.name, output_ptr)
        for name in self._scratch:
            self.context.set_tensor_address(name, self._scratch_for(name).ptr)
        if not self.context.execute_async_v3(stream.ptr):
            raise EngineCompatibilityError("TensorRT failed to enqueue inference",
                                           note="; ".join(self._logger.errors[-2:]) or None)

    def _scratch_for(self, name: str) -> DeviceBuffer:
        assert self.context is not None and self.engine is not None
        shape = self.context.get_tensor_shape(name)
        itemsize = np.dtype(self._features.module.nptype(self.engine.get_tensor_dtype(name))).itemsize
        nbytes = int(np.prod([shape[i] for i in range(len(shape))])) * itemsize
        if self._scratch[name].nbytes < nbytes:
            self._scratch[name].close()
            self._scratch[name] = DeviceBuffer(nbytes)
        return self._scratch[name]

    def close(self) -> None:
        """Destroys the execution context, then the engine, then the runtime: each needs the one after it,
        and all of them the CUDA context, which the runtime session releases only after this."""
        for buffer in getattr(self, "_scratch", {}).values():
            buffer.close()
        self.context = None
        self.engine = None
        self._runtime = None
