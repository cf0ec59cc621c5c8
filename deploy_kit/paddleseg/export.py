"""Export a PaddleSeg model the way PaddleSeg's `tools/export.py` does, for the demo model and the tests.

Kept in the package (not in tests) because `models/train_demo.py` and the test suite must produce the
same folder layout a user gets from PaddleSeg: `deploy.yaml` + `model.json` / `model.pdmodel` +
`model.pdiparams`. Needs `paddlepaddle` and `paddleseg`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import yaml


def export_inference_model(model: Any, save_dir: Path, input_shape: Sequence[int | None],
                           transforms: list[dict[str, Any]], output_op: str = "argmax") -> Path:
    """Saves `model` (a paddleseg model in eval mode) and its `deploy.yaml` into `save_dir`.

    Mirrors PaddleSeg 2.8 `tools/export.py`, including its quirk of naming `model.pdmodel` in
    `deploy.yaml` even when Paddle 3 writes `model.json`.
    """
    import paddle
    from paddleseg.deploy.export import WrappedModel

    if output_op != "none":
        model = WrappedModel(model, output_op)
    model.eval()
    spec = [paddle.static.InputSpec(shape=list(input_shape), dtype="float32")]
    static_model = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    save_dir.mkdir(parents=True, exist_ok=True)
    paddle.jit.save(static_model, str(save_dir / "model"))
    deploy_info = {
        "Deploy": {
            "model": "model.pdmodel",
            "params": "model.pdiparams",
            "transforms": transforms,
            "input_shape": list(input_shape),
            "output_op": output_op,
            "output_dtype": "int32" if output_op == "argmax" else "float32",
        }
    }
    (save_dir / "deploy.yaml").write_text(yaml.dump(deploy_info))
    return save_dir


def build_pp_liteseg_t(num_classes: int) -> Any:
    """PP-LiteSeg-T: PaddleSeg's `PPLiteSeg` on an STDC1 backbone, with the channels of its T config."""
    from paddleseg.models import PPLiteSeg
    from paddleseg.models.backbones import STDC1

    return PPLiteSeg(num_classes=num_classes, backbone=STDC1(), arm_out_chs=[32, 64, 128],
                     seg_head_inter_chs=[32, 64, 64])


def build_architecture(name: str, num_classes: int) -> Any:
    """A paddleseg 2.8 model by the name the zoo tests and the benchmark use (seeded by the caller)."""
    import paddleseg.models as m
    import paddleseg.models.backbones as b

    builders: dict[str, Callable[[], Any]] = {
        "pp_liteseg_t": lambda: build_pp_liteseg_t(num_classes),
        "unet": lambda: m.UNet(num_classes=num_classes),
        "bisenetv2": lambda: m.BiSeNetV2(num_classes=num_classes),
        "segformer_b0": lambda: m.SegFormer(num_classes=num_classes, backbone=b.MixVisionTransformer_B0(),
                                            embedding_dim=256),
        "ocrnet_hrnet_w18": lambda: m.OCRNet(num_classes=num_classes, backbone=b.HRNet_W18(), backbone_indices=[0]),
    }
    if name not in builders:
        raise ValueError(f"unknown architecture {name!r}: one of {', '.join(builders)}")
    return builders[name]()
