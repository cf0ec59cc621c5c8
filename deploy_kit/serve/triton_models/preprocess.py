"""PaddleSeg's preprocessing (deploy.yaml's transforms, as `convert` recorded them) as a Triton
python-backend model: image bytes in, the engine's NCHW input and the image's original H, W out. A
GPU instance decodes JPEGs with the GPU's hardware JPEG decoder (other formats on the CPU), runs
deploy-kit's preprocessing kernel on its device and hands the input on as a device tensor (DLPack), so
the ensemble's engine reads it without a copy through the host; a CPU instance runs PaddleSeg's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's python backend

from deploy_kit.artifact import Artifact
from deploy_kit.errors import DeployKitError
from deploy_kit.paddleseg.preprocess import PreprocessSpec, preprocess_cpu
from deploy_kit.serve.requests import IMAGE_BYTES, instance_kernels, request_images


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        artifact = Artifact.open(Path(args["model_repository"]) / args["model_version"] / "deploy-kit-model")
        self.spec = PreprocessSpec.from_metadata(artifact.preprocessing)
        self.dtype = np.dtype(parameters.get("input_dtype", "float32"))
        self.max_pixels = int(parameters.get("max_pixels", "64000000"))
        self.kernels = instance_kernels(args, self.spec)
        self.decodes_jpegs = self.kernels is not None and self.kernels.jpeg_decoder is not None
        pb_utils.Logger.log_info(f"{args['model_instance_name']}: JPEG decoder: "
                                 + (self.kernels.jpeg_decoder_note if self.kernels is not None else "on the CPU"))

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                images = request_images({IMAGE_BYTES: pb_utils.get_input_tensor_by_name(request, IMAGE_BYTES).as_numpy()},
                                        self.max_pixels, keep_jpegs=self.decodes_jpegs)
                tensor = self._preprocess(images)
            except DeployKitError as exc:  # this request's alone: the others of the batch are answered
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(exc.one_line())))
                continue
            sizes = np.array([image.shape[:2] for image in images], np.int32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor, pb_utils.Tensor("original_hw", sizes)]))
        return responses

    def _preprocess(self, images: list[Any]) -> Any:
        if self.kernels is not None:
            return pb_utils.Tensor.from_dlpack("input", self.kernels.preprocess_on_device(images, self.spec, self.dtype))
        return pb_utils.Tensor("input", np.stack([preprocess_cpu(image, self.spec) for image in images]).astype(self.dtype))

    def finalize(self) -> None:
        if self.kernels is not None:
            self.kernels.close()
