"""deploy-kit's whole runtime as one Triton python-backend model: image bytes or uint8 arrays in, uint8
label maps at each image's size out, on the backend the instance's device allows (TensorRT, ONNX Runtime
CUDA or CPU). A bad request gets its own error response; the others in the batch are answered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import triton_python_backend_utils as pb_utils  # provided by Triton's python backend

from deploy_kit.segmenter import Segmenter
from deploy_kit.errors import DeployKitError
from deploy_kit.serve.requests import IMAGE, IMAGE_BYTES, LABELS, request_images, stacked_labels


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        model = Path(args["model_repository"]) / args["model_version"] / "deploy-kit-model"
        on_gpu = args.get("model_instance_kind") == "GPU"
        self.max_pixels = int(parameters.get("max_pixels", "64000000"))
        self.segmenter = Segmenter(model, backend=parameters.get("backend", "auto") if on_gpu else "onnxruntime-cpu",
                                   device=int(args.get("model_instance_device_id", 0)) if on_gpu else 0,
                                   max_batch=max(1, int(config.get("max_batch_size", 1))))

    def execute(self, requests: list[Any]) -> list[Any]:
        images, failures = [], {}
        for index, request in enumerate(requests):
            inputs = {name: tensor.as_numpy() for name in (IMAGE_BYTES, IMAGE)
                      if (tensor := pb_utils.get_input_tensor_by_name(request, name)) is not None}
            try:
                images.append(request_images(inputs, self.max_pixels))
            except DeployKitError as exc:
                images.append([])
                failures[index] = exc.one_line()
        labels = iter(self.segmenter.predict([image for batch in images for image in batch]))
        responses = []
        for index, batch in enumerate(images):
            mine = [next(labels) for _ in batch]
            if index in failures:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(failures[index])))
                continue
            try:
                output = pb_utils.Tensor(LABELS, stacked_labels(mine))
                responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
            except DeployKitError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(exc.one_line())))
        return responses

    def finalize(self) -> None:
        self.segmenter.close()

