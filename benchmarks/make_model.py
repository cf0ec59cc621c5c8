"""Export a benchmark (or GPU-test) model, then `convert --onnx-only` it. By default the benchmark model:
PP-LiteSeg-T (STDC1) at 1x3x512x1024 with 19 classes, the Cityscapes configuration the targets in
benchmarks/README.md are stated for.

    python benchmarks/make_model.py --out build/bench [--weights model.pdparams]
    python benchmarks/make_model.py --arch bisenetv2 --dynamic --out build/bisenetv2-dynamic
    python benchmarks/make_model.py --arch bisenetv2 --height 1024 --width 2048 --out build/bisenetv2-fixed

`--dynamic` exports `[-1, 3, -1, -1]` with deploy.yaml transforms `[Normalize]` only, as PaddleSeg's
tools/export.py does for every Cityscapes config; otherwise the export is fixed at --height x --width
with a Resize to it. Speed does not depend on the weights; without --weights they are PaddleSeg's seeded
initialisation. Needs the `train` extra (paddleseg).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deploy_kit.cli import main as deploy_kit
from deploy_kit.paddleseg.export import build_architecture, export_inference_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--arch", default="pp_liteseg_t", help="pp_liteseg_t, unet, bisenetv2, segformer_b0, ocrnet_hrnet_w18")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--dynamic", action="store_true", help="export dynamic H and W, Normalize only")
    return parser.parse_args()


def main() -> int:
    import paddle

    args = parse_args()
    paddle.seed(0)
    model = build_architecture(args.arch, args.classes)
    if args.weights:
        model.set_state_dict(paddle.load(str(args.weights)))
    if args.dynamic:
        shape, transforms = [None, 3, None, None], [{"type": "Normalize"}]
    else:
        shape = [None, 3, args.height, args.width]
        transforms = [{"type": "Resize", "target_size": [args.width, args.height]}, {"type": "Normalize"}]
    paddle_dir = export_inference_model(model, args.out / "paddle", shape, transforms, output_op="none")
    return deploy_kit(["convert", str(paddle_dir), "-o", str(args.out / "onnx"), "--onnx-only"])


if __name__ == "__main__":
    raise SystemExit(main())
