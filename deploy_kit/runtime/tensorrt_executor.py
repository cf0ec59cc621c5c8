"""TensorRT (`tensorrt` or `tensorrt_rtx`) on the runtime's device buffers: name-based tensor I/O,
input shape set per batch, `execute_async_v3` on the runtime's stream."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..compat import TensorRTFeatures
from ..errors import EngineCompatibilityError
from ..stages.build import make_logger
from .cuda import Stream
from .executor import DeviceExecutor, TensorSpec

if TYPE_CHECKING:
    import tensorrt as trt


class TensorRTExecutor(DeviceExecutor):
    capturable = True  # execute_async_v3 is stream-ordered GPU work once shapes and addresses are set

    def __init__(self, engine_path: Path, features: TensorRTFeatures) -> None:
        api = features.module
        self.name = features.flavor
        self._logger = make_logger(api)
        self._runtime: trt.Runtime = api.Runtime(self._logger)
        engine: trt.ICudaEngine | None = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise EngineCompatibilityError("TensorRT could not deserialize the engine", path=engine_path,
                                           note="; ".join(self._logger.errors[-2:]) or None,
                                           hint=f"rebuild it here: deploy-kit convert MODEL -o {engine_path.parent} --force")
        self.engine = engine
        self.context: trt.IExecutionContext = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == api.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == api.TensorIOMode.OUTPUT]
        self.input = self._spec(features, inputs[0])
        self.output = self._spec(features, outputs[0])

    def _spec(self, features: TensorRTFeatures, name: str) -> TensorSpec:
        shape = self.engine.get_tensor_shape(name)
        dtype = np.dtype(features.module.nptype(self.engine.get_tensor_dtype(name)))
        return TensorSpec(name, dtype, tuple(shape[i] for i in range(len(shape))))

    def enqueue(self, input_ptr: int, output_ptr: int, batch: int, stream: Stream) -> None:
        self.context.set_input_shape(self.input.name, (batch, *self.input.shape[1:]))
        self.context.set_tensor_address(self.input.name, input_ptr)
        self.context.set_tensor_address(self.output.name, output_ptr)
        if not self.context.execute_async_v3(stream.ptr):
            raise EngineCompatibilityError("TensorRT failed to enqueue inference",
                                           note="; ".join(self._logger.errors[-2:]) or None)
