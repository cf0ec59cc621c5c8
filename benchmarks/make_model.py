"""Export the benchmark model: PP-LiteSeg-T (STDC1) at 1x3x512x1024 with 19 classes, the Cityscapes
configuration the targets in benchmarks/README.md are stated for, then `convert --onnx-only` it.

    python benchmarks/make_model.py --out build/bench [--weights model.pdparams]

Speed does not depend on the weights; without --weights they are PaddleSeg's seeded initialisation.
Needs the `train` extra (paddleseg).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deploy_kit.cli import main as deploy_kit
from deploy_kit.paddleseg.export import build_pp_liteseg_t, export_inference_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    return parser.parse_args()


def main() -> int:
    import paddle

    args = parse_args()
    paddle.seed(0)
    model = build_pp_liteseg_t(args.classes)
    if args.weights:
        model.set_state_dict(paddle.load(str(args.weights)))
    paddle_dir = export_inference_model(model, args.out / "paddle", [None, 3, args.height, args.width],
                                        [{"type": "Resize", "target_size": [args.width, args.height]},
                                         {"type": "Normalize"}], output_op="none")
    return deploy_kit(["convert", str(paddle_dir), "-o", str(args.out / "onnx"), "--onnx-only"])


if __name__ == "__main__":
    raise SystemExit(main())
