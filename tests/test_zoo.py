"""Every PaddleSeg architecture users deploy: exported from the installed paddleseg the way its
tools/export.py does (seeded random weights), converted (a TensorRT-RTX engine built where it is
installed), segmented on real photos through the ONNX Runtime CPU path, and compared with PaddleSeg's own
pipeline (deploy.yaml transforms, Paddle Inference, reverse_transform).

PIDNet is not in paddleseg 2.8 (PyPI's newest); `SumHead` below is a small network of Paddle layers
with the op that makes paddle2onnx ask PIDNet's opset (`pd_op.sum` with an axis), to cover negotiation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from deploy_kit import Segmenter
from deploy_kit.cli import main
from deploy_kit.errors import InputImageError

from .conftest import require

AGREEMENT = 0.9999  # share of pixels equal to PaddleSeg's own pipeline


@dataclass(frozen=True)
class ZooModel:
    name: str
    build: Callable[[], Any]
    input_shape: tuple[int | None, int | None]  # H, W of the export; None = dynamic
    outputs: int = 1
    opset: int = 11
    rewrites: tuple[str, ...] = ()

    @property
    def dynamic(self) -> bool:
        return self.input_shape[0] is None


def _models() -> Any:
    import paddleseg.models as m
    import paddleseg.models.backbones as b

    return m, b


def _sum_head() -> Any:
    import paddle

    class SumHead(paddle.nn.Layer):
        """conv features whose channel sum (paddle.sum over an axis) joins the logits."""

        def __init__(self) -> None:
            super().__init__()
            self.features = paddle.nn.Conv2D(3, 8, 3, stride=2, padding=1)
            self.classifier = paddle.nn.Conv2D(8, 3, 1)

        def forward(self, x: Any) -> list[Any]:
            features = paddle.nn.functional.relu(self.features(x))
            logits = self.classifier(features) + paddle.sum(features, axis=1, keepdim=True)
            return [paddle.nn.functional.interpolate(logits, x.shape[2:], mode="bilinear")]

    return SumHead()


ZOO = [
    ZooModel("pp_humanseg_lite", lambda: _models()[0].PPHumanSegLite(num_classes=2), (192, 192)),
    ZooModel("pp_humansegv2_lite", lambda: _models()[0].MobileSeg(
        num_classes=2, backbone=_models()[1].MobileNetV3_large_x1_0(), backbone_indices=[1, 2, 3],
        cm_bin_sizes=[1, 2, 4], cm_out_ch=128, arm_out_chs=[32, 64, 128], seg_head_inter_chs=[32, 32, 32]),
        (144, 256)),
    ZooModel("unet_dynamic", lambda: _models()[0].UNet(num_classes=3), (None, None)),
    ZooModel("bisenetv2_dynamic", lambda: _models()[0].BiSeNetV2(num_classes=3), (None, None)),
    ZooModel("segformer_b0", lambda: _models()[0].SegFormer(
        num_classes=4, backbone=_models()[1].MixVisionTransformer_B0(), embedding_dim=256), (256, 256)),
    ZooModel("segformer_b0_dynamic", lambda: _models()[0].SegFormer(
        num_classes=4, backbone=_models()[1].MixVisionTransformer_B0(), embedding_dim=256), (None, None)),
    ZooModel("pp_mobileseg_tiny", lambda: _models()[0].PPMobileSeg(
        num_classes=4, backbone=_models()[1].MobileSeg_Tiny(inj_type="AAM", out_feat_chs=[32, 64, 128])),
        (256, 256), rewrites=("interp-scale-float32",)),
    ZooModel("fast_scnn", lambda: _models()[0].FastSCNN(num_classes=4), (256, 256), outputs=2),
    ZooModel("deeplabv3p", lambda: _models()[0].DeepLabV3P(
        num_classes=4, backbone=_models()[1].ResNet18_vd(output_stride=8)), (256, 256)),
    ZooModel("ocrnet_hrnet_w18", lambda: _models()[0].OCRNet(
        num_classes=4, backbone=_models()[1].HRNet_W18(), backbone_indices=[0]), (256, 256)),
    ZooModel("sum_head_opset13", _sum_head, (128, 128), opset=13),
]


def _export(zoo: ZooModel, folder: Path) -> Path:
    require("paddle", "paddleseg", "paddle2onnx")
    import paddle

    from deploy_kit.paddleseg.export import export_inference_model

    paddle.seed(11)
    model = zoo.build()
    height, width = zoo.input_shape
    transforms: list[dict[str, Any]] = [{"type": "Normalize"}]
    if not zoo.dynamic:
        transforms.insert(0, {"type": "Resize", "target_size": [width, height]})
    return export_inference_model(model, folder, [None, 3, height, width], transforms, output_op="none")


def _paddleseg_labels(model_dir: Path, image: np.ndarray, dynamic: bool) -> np.ndarray:
    """PaddleSeg's own prediction; a dynamic-shape model gets PaddleSeg's Padding to the stride first."""
    import paddle
    from paddleseg.core.infer import reverse_transform
    from paddleseg.transforms import Compose, Padding

    from deploy_kit.paddleseg.reference import load_reference

    reference = load_reference(model_dir)
    if dynamic:
        h, w = image.shape[:2]
        reference.transforms = Compose([Padding(target_size=(-(-w // 32) * 32, -(-h // 32) * 32)),
                                        *reference.transforms.transforms])
    batch, trans_info = reference.preprocess(image)
    labels = reference.run(batch).argmax(axis=1)
    labels = paddle.to_tensor(labels.reshape(1, 1, *labels.shape[-2:]).astype("int32"))
    return reverse_transform(labels, trans_info, mode="nearest").numpy()[0, 0].astype(np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("zoo", ZOO, ids=[z.name for z in ZOO])
def test_architecture_converts_and_matches_paddleseg(zoo, tmp_path, photos, capsys):
    model_dir = _export(zoo, tmp_path / "export")
    out = tmp_path / "build"
    require("tensorrt_rtx")
    assert main(["convert", str(model_dir), "-o", str(out)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    report = json.loads((out / "convert.json").read_text())
    meta = json.loads((out / "model.rtx.engine.json").read_text())
    assert report["onnx_opset"] == meta["onnx_opset"] == zoo.opset
    assert ("raised the ONNX opset from 11 to 13" in printed) == (zoo.opset == 13)
    assert tuple(report["stages"]["export"]["details"]["program_rewrites"]) == zoo.rewrites
    if zoo.rewrites:  # the rewrite is needed: paddle2onnx on the program as saved fails
        raw = subprocess.run([sys.executable, "-m", "deploy_kit.convert.export", str(model_dir / "model.json"),
                              str(model_dir / "model.pdiparams"), str(tmp_path / "raw.onnx"), "11"],
                             capture_output=True, text=True)
        assert raw.returncode != 0 and "FloatAttribute" in raw.stderr + raw.stdout
    assert len(meta["outputs"]) == zoo.outputs
    if zoo.dynamic:
        assert meta["profile"]["min"][2:] == [128, 128] and meta["profile"]["max"][2:] == [2048, 2048]
        assert report["preprocessing"]["dynamic_hw"] and "dynamic H x W" in printed
    else:
        assert meta["profile"]["opt"][2:] == list(zoo.input_shape)
    with Segmenter(out, backend="onnxruntime-cpu") as segmenter:
        ours = segmenter.predict(photos)
        if zoo.dynamic:  # each photo ran at its own size; one below the profile is refused, naming it
            with pytest.raises(InputImageError, match="outside the model's input profile 128x128 to 2048x2048"):
                segmenter.predict(np.zeros((40, 90, 3), np.uint8))
    same = [np.mean(mine == _paddleseg_labels(model_dir, photo, zoo.dynamic)) for mine, photo in zip(ours, photos)]
    assert min(same) >= AGREEMENT, same
