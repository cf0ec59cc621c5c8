"""PaddleSeg's postprocessing as a Triton python-backend model: the engine's scores (or labels) and the
image's original H, W in, the uint8 label map at that size out (argmax and nearest resize back)."""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's python backend

from deploy_kit.paddleseg.postprocess import postprocess_cpu


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            scores = pb_utils.get_input_tensor_by_name(request, "scores").as_numpy()
            sizes = pb_utils.get_input_tensor_by_name(request, "original_hw").as_numpy()
            labels = [postprocess_cpu(output, (int(h), int(w))) for output, (h, w) in zip(scores, sizes)]
            if len({label.shape for label in labels}) > 1:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    "the images of one request differ in size; send them in separate requests")))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("labels", np.stack(labels))]))
        return responses
