"""Train the shipped demo model: PP-LiteSeg-T on deploy-kit's synthetic street scenes, on the CPU.

    python models/train_demo.py --out models/runs/demo [--iters 700] [--resume]

Uses PaddleSeg's own model, transforms, OHEM cross-entropy loss and AdamW optimizer builder. Seeded:
the same command gives the same weights on the same machine. Prints progress and the validation mIoU,
then exports the best checkpoint in PaddleSeg's inference format (`deploy.yaml` with a fixed input
shape and `output_op: none`) under `<out>/inference_model`.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from deploy_kit.evaluate import Confusion
from deploy_kit.paddleseg.export import build_pp_liteseg_t, export_inference_model
from deploy_kit.synthetic import CLASS_NAMES, SceneSpec, generate_scene

TRAIN_SEED, VAL_SEED = 1, 2  # the README's quality bar uses seed 3, never seen here
MODEL_SHAPE = (256, 512)  # H, W of the deployed model; multiples of 128 as PP-LiteSeg's SPPM needs
DEPLOY_TRANSFORMS = [{"type": "Resize", "target_size": [MODEL_SHAPE[1], MODEL_SHAPE[0]]}, {"type": "Normalize"}]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models/runs/demo"))
    parser.add_argument("--iters", type=int, default=700)
    parser.add_argument("--crop-fraction", type=float, default=0.8,
                        help="share of iterations trained on half-size crops (4x cheaper), the rest on full scenes")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--val-images", type=int, default=24)
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pdparams")
    return parser.parse_args()


def seed_everything(seed: int) -> None:
    import paddle

    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def make_batch(step: int, batch: int, crop: bool, transforms) -> tuple[np.ndarray, np.ndarray]:
    """One batch of freshly generated training scenes, augmented with PaddleSeg's transforms."""
    images, labels = [], []
    h, w = MODEL_SHAPE
    for i in range(batch):
        image, label = generate_scene(TRAIN_SEED, step * batch + i, SceneSpec(h, w))
        if crop:
            rng = np.random.default_rng([step, i])
            y, x = int(rng.integers(0, h // 2 + 1)), int(rng.integers(0, w // 2 + 1))
            image, label = image[y:y + h // 2, x:x + w // 2], label[y:y + h // 2, x:x + w // 2]
        data = transforms({"img": image.astype("float32"), "label": label.astype("int64"),
                           "trans_info": [], "gt_fields": ["label"]})
        images.append(data["img"])
        labels.append(data["label"])
    return np.stack(images), np.stack(labels)


def validate(model, transforms, count: int) -> tuple[float, np.ndarray]:
    import paddle

    model.eval()
    confusion = Confusion(len(CLASS_NAMES))
    with paddle.no_grad():
        for i in range(count):
            image, label = generate_scene(VAL_SEED, i, SceneSpec(*MODEL_SHAPE))
            data = transforms({"img": image.astype("float32"), "trans_info": []})
            logits = model(paddle.to_tensor(data["img"][None]))[0]
            confusion.add(logits.argmax(axis=1).numpy()[0], label)
    model.train()
    return confusion.mean_iou(), confusion.class_iou()


def _schedule(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import paddle

    decay = paddle.optimizer.lr.PolynomialDecay(args.lr, decay_steps=args.iters, end_lr=0.0, power=0.9)
    return paddle.optimizer.lr.LinearWarmup(decay, warmup_steps=50, start_lr=args.lr / 10, end_lr=args.lr)


def main() -> None:
    import paddle
    from paddleseg.models.losses import CrossEntropyLoss
    from paddleseg.optimizers.optimizer import AdamW
    from paddleseg.transforms import Compose, Normalize, RandomDistort, RandomHorizontalFlip

    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seed_everything(0)
    paddle.set_device("cpu")
    model = build_pp_liteseg_t(len(CLASS_NAMES))
    train_transforms = Compose([RandomHorizontalFlip(), RandomDistort(brightness_range=0.3, contrast_range=0.3,
                                                                       saturation_range=0.3), Normalize()])
    val_transforms = Compose([Normalize()])
    scheduler = _schedule(args)
    optimizer = AdamW(weight_decay=0.01)(model, scheduler)
    # PaddleSeg 2.8's OhemCrossEntropyLoss breaks on Paddle 3's type promotion; top-k pixel CE is its OHEM twin
    losses = [CrossEntropyLoss(top_k_percent_pixels=0.3) for _ in range(3)]
    start, best, history = 0, -1.0, []
    if args.resume and (args.out / "last.pdparams").exists():
        state = json.loads((args.out / "state.json").read_text())
        model.set_state_dict(paddle.load(str(args.out / "last.pdparams")))
        optimizer.set_state_dict(paddle.load(str(args.out / "last.pdopt")))
        start, best, history = state["step"], state["best"], state["history"]
        # The optimizer state carries the old run's schedule; this run follows its own --iters.
        scheduler = _schedule(args)
        optimizer._learning_rate = scheduler
        for _ in range(start):
            scheduler.step()
    model.train()
    tic = time.time()
    for step in range(start, args.iters):
        crop = step < args.crop_fraction * args.iters
        images, labels = make_batch(step, 8 if crop else 4, crop, train_transforms)
        logits = model(paddle.to_tensor(images))
        label_tensor = paddle.to_tensor(labels)
        loss = sum(fn(out, label_tensor) for fn, out in zip(losses, logits))
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        scheduler.step()
        if (step + 1) % 10 == 0:
            rate = (time.time() - tic) / (step + 1 - start)
            print(f"iter {step + 1}/{args.iters} loss {float(loss):.4f} lr {scheduler.get_lr():.2e} "
                  f"{rate:.2f}s/iter eta {rate * (args.iters - step - 1) / 60:.1f} min", flush=True)
        if (step + 1) % args.val_every == 0 or step + 1 == args.iters:
            miou, ious = validate(model, val_transforms, args.val_images)
            history.append({"iter": step + 1, "miou": miou, "class_iou": ious.round(4).tolist()})
            print(f"iter {step + 1} val mIoU {miou:.4f} " +
                  " ".join(f"{n}={v:.3f}" for n, v in zip(CLASS_NAMES, ious)), flush=True)
            paddle.save(model.state_dict(), str(args.out / "last.pdparams"))
            paddle.save(optimizer.state_dict(), str(args.out / "last.pdopt"))
            if miou > best:
                best = miou
                paddle.save(model.state_dict(), str(args.out / "best.pdparams"))
            (args.out / "state.json").write_text(json.dumps({"step": step + 1, "best": best, "history": history}))
    model.set_state_dict(paddle.load(str(args.out / "best.pdparams")))
    export_inference_model(model, args.out / "inference_model", [None, 3, *MODEL_SHAPE], DEPLOY_TRANSFORMS,
                           output_op="none")
    settings = {"iters": args.iters, "lr": args.lr, "crop_fraction": args.crop_fraction, "optimizer": "AdamW(0.01)",
                "loss": "3 x CrossEntropyLoss(top_k_percent_pixels=0.3)", "train_seed": TRAIN_SEED,
                "val_seed": VAL_SEED, "best_val_miou": best, "seconds": round(time.time() - tic)}
    (args.out / "training.json").write_text(json.dumps(settings, indent=2))
    print(f"exported {args.out / 'inference_model'}; best val mIoU {best:.4f}", flush=True)


if __name__ == "__main__":
    main()
