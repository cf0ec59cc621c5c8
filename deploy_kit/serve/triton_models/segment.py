"""deploy-kit's whole runtime as one Triton python-backend model: image bytes or uint8 arrays in, uint8
label maps at each image's size out, on the backend the instance's device allows (TensorRT, ONNX Runtime
CUDA or CPU). A bad request gets its own error response; the others in the batch are answered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's python backend

from deploy_kit.segmenter import Segmenter
from deploy_kit.serve.requests import IMAGE, IMAGE_BYTES, LABELS, segment_requests


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        model = Path(args["model_repository"]) / args["model_version"] / "deploy-kit-model"
        on_gpu = args.get("model_instance_kind") == "GPU"
        self.max_pixels = int(parameters.get("max_pixels", "64000000"))
        self.segmenter = Segmenter(model, backend=parameters.get("backend", "auto") if on_gpu else "onnxruntime-cpu",
                                   device=int(args.get("model_instance_device_id", 0)) if on_gpu else 0,
                                   max_batch=max(1, int(config.get("max_batch_size", 1))),
                                   decoder=parameters.get("decoder", "auto") if on_gpu else "auto")
        self.segmenter.warm_up()  # see Segmenter.warm_up: nothing is captured under load
        pb_utils.Logger.log_info(f"{args['model_instance_name']}: {self.segmenter.describe()}")

    def execute(self, requests: list[Any]) -> list[Any]:
        inputs = [{name: tensor.as_numpy() for name in (IMAGE_BYTES, IMAGE)
                   if (tensor := pb_utils.get_input_tensor_by_name(request, name)) is not None}
                  for request in requests]
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(LABELS, outcome)])
                if isinstance(outcome, np.ndarray) else pb_utils.InferenceResponse(error=pb_utils.TritonError(outcome.one_line()))
                for outcome in segment_requests(self.segmenter, inputs, self.max_pixels)]

    def finalize(self) -> None:
        self.segmenter.close()

