"""PaddleSeg's postprocessing as a Triton python-backend model: the engine's scores (or labels) and the
image's original H, W in, the uint8 label map at that size out (resize back and argmax). A GPU instance
runs deploy-kit's postprocessing kernel on its device, reading scores that are on the GPU (the engine's)
where they are, by DLPack; a CPU instance the same arithmetic in numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's python backend

from deploy_kit.paddleseg.postprocess import postprocess_cpu
from deploy_kit.runtime.dlpack import borrow
from deploy_kit.serve.requests import instance_kernels


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.kernels = instance_kernels(args)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            scores = pb_utils.get_input_tensor_by_name(request, "scores")
            sizes = [(int(h), int(w)) for h, w in pb_utils.get_input_tensor_by_name(request, "original_hw").as_numpy()]
            if len(set(sizes)) > 1:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    "the images of one request differ in size; send them in separate requests")))
                continue
            if self.kernels is not None:  # a GPU instance reads the engine's scores on the device
                labels = self.kernels.postprocess(scores.as_numpy() if scores.is_cpu() else borrow(scores.to_dlpack()),
                                                  sizes)
            else:
                labels = [postprocess_cpu(output, size) for output, size in zip(scores.as_numpy(), sizes)]
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("labels", np.stack(labels))]))
        return responses

    def finalize(self) -> None:
        if self.kernels is not None:
            self.kernels.close()
