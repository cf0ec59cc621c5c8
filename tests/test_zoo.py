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
from deploy_kit.paddleseg.export import build_architecture

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
    ZooModel("unet_dynamic", lambda: build_architecture("unet", 3), (None, None)),
    ZooModel("bisenetv2_dynamic", lambda: build_architecture("bisenetv2", 3), (None, None)),
    ZooModel("segformer_b0", lambda: build_architecture("segformer_b0", 4), (256, 256)),
    ZooModel("segformer_b0_dynamic", lambda: build_architecture("segformer_b0", 4), (None, None)),
    ZooModel("pp_mobileseg_tiny", lambda: _models()[0].PPMobileSeg(
        num_classes=4, backbone=_models()[1].MobileSeg_Tiny(inj_type="AAM", out_feat_chs=[32, 64, 128])),
        (256, 256), rewrites=("interp-scale-float32",)),
    ZooModel("fast_scnn", lambda: _models()[0].FastSCNN(num_classes=4), (256, 256), outputs=2),
    ZooModel("deeplabv3p", lambda: _models()[0].DeepLabV3P(
        num_classes=4, backbone=_models()[1].ResNet18_vd(output_stride=8)), (256, 256)),
    ZooModel("ocrnet_hrnet_w18", lambda: build_architecture("ocrnet_hrnet_w18", 4), (256, 256)),
    ZooModel("ocrnet_hrnet_w18_dynamic", lambda: build_architecture("ocrnet_hrnet_w18", 4), (None, None)),
    ZooModel("sum_head_opset13", _sum_head, (128, 128), opset=13),
]


def _export(zoo: ZooModel, folder: Path) -> tuple[Path, Any]:
    """The PaddleSeg export (as `tools/export.py` writes it: a dynamic-shape one with `Normalize` only, what
    every Cityscapes config's val_transforms gives) and the dygraph model it was exported from."""
    require("paddle", "paddleseg", "paddle2onnx")
    import paddle

    from deploy_kit.paddleseg.export import export_inference_model

    paddle.seed(11)
    model = zoo.build()
    height, width = zoo.input_shape
    transforms: list[dict[str, Any]] = [{"type": "Normalize"}]
    if not zoo.dynamic:
        transforms.insert(0, {"type": "Resize", "target_size": [width, height]})
    return export_inference_model(model, folder, [None, 3, height, width], transforms, output_op="none"), model


def _paddleseg_labels(model_dir: Path, images: list[np.ndarray]) -> list[np.ndarray]:
    """PaddleSeg's own prediction: deploy.yaml transforms, Paddle Inference, reverse_transform (each
    image at its own size for a dynamic-shape export, as PaddleSeg's deploy pipeline feeds it)."""
    from deploy_kit.paddleseg.reference import load_reference

    reference = load_reference(model_dir)
    return [reference.segment(image) for image in images]


@pytest.fixture(scope="module")
def cityscapes_frame(photos) -> np.ndarray:
    """A full-resolution 1024x2048 frame (a real photo scaled up), the size Cityscapes models run at."""
    import cv2

    return cv2.resize(photos[3], (2048, 1024), interpolation=cv2.INTER_LINEAR)


@pytest.mark.slow
@pytest.mark.parametrize("zoo", ZOO, ids=[z.name for z in ZOO])
def test_architecture_converts_and_matches_paddleseg(zoo, tmp_path, photos, cityscapes_frame, capsys):
    model_dir, _ = _export(zoo, tmp_path / "export")
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
    images = list(photos)
    if zoo.dynamic:  # the default profile covers a 1024x2048 Cityscapes frame and a 1080x1920 video frame
        assert meta["profile"]["min"][2:] == [128, 128] and meta["profile"]["max"][2:] == [2048, 2048]
        assert report["preprocessing"]["dynamic_hw"] and "dynamic H x W" in printed
        images.append(cityscapes_frame)
    else:
        assert meta["profile"]["opt"][2:] == list(zoo.input_shape)
    with Segmenter(out, backend="onnxruntime-cpu") as segmenter:
        ours = segmenter.predict(images)
        if zoo.dynamic:  # each photo ran at its own size; one below the profile is refused, naming it
            with pytest.raises(InputImageError, match="outside the model's input profile 128x128 to 2048x2048"):
                segmenter.predict(np.zeros((40, 90, 3), np.uint8))
    assert len({image.shape for image in images}) >= 4
    same = [np.mean(mine == want) for mine, want in zip(ours, _paddleseg_labels(model_dir, images))]
    assert min(same) >= AGREEMENT, same


def _paddleseg_slide_labels(model: Any, model_dir: Path, image: np.ndarray, crop: tuple[int, int],
                            stride: tuple[int, int]) -> np.ndarray:
    """PaddleSeg's `slide_inference` with the dygraph model the export came from, on the image normalized
    as deploy.yaml says (without the Resize a fixed-size export has: the crops are of the image itself)."""
    import paddle
    from paddleseg.core.infer import slide_inference
    from paddleseg.transforms import Compose, Normalize

    normalized = Compose([Normalize()])({"img": image.astype("float32"), "trans_info": []})["img"]
    with paddle.no_grad():
        logits = slide_inference(model, paddle.to_tensor(normalized[None]), crop, stride)
    return logits.numpy().argmax(axis=1)[0].astype(np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("name,crop,stride", [("bisenetv2_dynamic", (200, 160), (150, 100)),
                                              ("segformer_b0", (256, 256), (170, 170))])
def test_sliding_window_matches_paddleseg_slide_inference(name, crop, stride, tmp_path, photos):
    """Crops placed as PaddleSeg places them, scores summed and averaged, on a dynamic and a fixed-size
    export (whose crop is its input size), on an image larger than the crop both ways."""
    zoo = next(z for z in ZOO if z.name == name)
    model_dir, model = _export(zoo, tmp_path / "export")
    out = tmp_path / "build"
    assert main(["convert", str(model_dir), "-o", str(out), "--onnx-only"]) == 0
    image = photos[3]  # 432x640: larger than the crop in both directions, sides not multiples of 32
    with Segmenter(out, backend="onnxruntime-cpu", max_batch=4, crop_size=crop, stride=stride) as segmenter:
        ours = segmenter.predict(image)[0]
    want = _paddleseg_slide_labels(model, model_dir, image, crop, stride)
    assert ours.shape == image.shape[:2]
    assert np.mean(ours == want) >= AGREEMENT, np.mean(ours == want)
