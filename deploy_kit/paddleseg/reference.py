"""PaddleSeg's own pipeline, as the reference every deploy-kit path is measured against.

`deploy.yaml` transforms run through `paddleseg.transforms`, the model through Paddle Inference, and
the label map goes back to the image size through `paddleseg.core.infer.reverse_transform`, exactly
as PaddleSeg's prediction does. Needs `paddlepaddle` and `paddleseg` (the `train` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .deploy_config import DeployConfig, load_deploy_config


class PaddleReference:
    """Paddle Inference on the CPU for one PaddleSeg inference folder."""

    def __init__(self, deploy: DeployConfig) -> None:
        from paddle import inference
        from paddleseg.cvlibs import manager
        from paddleseg.transforms import Compose

        config = inference.Config(str(deploy.model_file), str(deploy.params_file))
        config.disable_gpu()
        config.disable_mkldnn()  # oneDNN kernels mis-handle PP-LiteSeg's pooling on the CPU
        config.disable_glog_info()
        config.switch_ir_optim(False)
        self._predictor = inference.create_predictor(config)
        self.deploy = deploy
        self.transforms = Compose([manager.TRANSFORMS[t["type"]](**{k: v for k, v in t.items() if k != "type"})
                                   for t in deploy.transforms])

    def preprocess(self, image_bgr: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        """NCHW float32 batch of one image, and PaddleSeg's trans_info for reverse_transform."""
        data = self.transforms({"img": image_bgr.astype("float32"), "trans_info": []})
        return data["img"][None], data["trans_info"]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The model's first output for an NCHW float32 batch."""
        handle = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        handle.reshape(batch.shape)
        handle.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
        self._predictor.run()
        return self._predictor.get_output_handle(self._predictor.get_output_names()[0]).copy_to_cpu()

    def segment(self, image_bgr: np.ndarray) -> np.ndarray:
        """uint8 label map at the image's size, as PaddleSeg's prediction makes it."""
        import paddle
        from paddleseg.core.infer import reverse_transform

        batch, trans_info = self.preprocess(image_bgr)
        output = self.run(batch)
        labels = output if self.deploy.output_op == "argmax" else output.argmax(axis=1)
        labels = paddle.to_tensor(labels.reshape(1, 1, *labels.shape[-2:]).astype("int32"))
        return reverse_transform(labels, trans_info, mode="nearest").numpy()[0, 0].astype(np.uint8)


def load_reference(model_dir: Path) -> PaddleReference:
    return PaddleReference(load_deploy_config(model_dir))
