"""Evaluate a model: mIoU, per-class IoU, pixel accuracy, images/s (and agreement with Paddle Inference).

  deploy-kit eval images/ labels/ [--model build/] [--backend ...] [--reference paddle] [-o eval.json]
  deploy-kit eval --synthetic 100 [--seed 3] ...

Labels are PaddleSeg label PNGs (class ids, 255 = ignore) with the image's file stem. --synthetic N
evaluates on N freshly generated street scenes (seed 3 is never used in training).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from ..backends import registry
from ..errors import ConfigError
from ..evaluate import IGNORE_INDEX, Confusion
from ..fileio import write_json_atomic
from ..images import expand_inputs, read_image, read_label
from ..paddleseg.demo import restore_default_model
from ..paddleseg.reference import load_reference
from ..segmenter import Segmenter
from ..synthetic import EVAL_SEED, generate_scene



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="?", type=Path, help="folder of images")
    parser.add_argument("labels", nargs="?", type=Path, help="folder of label PNGs with the same file stems")
    parser.add_argument("--synthetic", type=int, metavar="N", help="evaluate on N generated scenes instead")
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help="seed of the generated scenes")
    parser.add_argument("--model", type=Path, help="convert output or PaddleSeg export (default: the shipped demo model)")
    parser.add_argument("--backend", default=registry.AUTO, choices=registry.names(), help=registry.HELP)
    parser.add_argument("--batch", type=int, default=4, help="images per inference")
    parser.add_argument("--num-classes", type=int, help="default: the model's output channels")
    parser.add_argument("--reference", choices=("paddle",), help="also measure pixel agreement with Paddle Inference")
    parser.add_argument("-o", "--out", type=Path, help="write the JSON report there (default: only print)")


def _samples(args: argparse.Namespace) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    if args.synthetic:
        for index in range(args.synthetic):
            image, label = generate_scene(args.seed, index)
            yield f"synthetic-{args.seed}-{index}", image, label
        return
    if args.images is None or args.labels is None:
        raise ConfigError("give IMAGES and LABELS folders, or --synthetic N")
    paths, errors = expand_inputs([str(args.images)])
    if errors:
        raise errors[0]
    for path in paths:
        yield path.name, read_image(path), read_label(args.labels, path)


def _paddle_model_dir(model: Path) -> Path:
    report = model / "convert.json"
    if report.is_file():
        return Path(json.loads(report.read_text())["model_dir"])
    return model


def _class_count(args: argparse.Namespace, model_classes: int | None, predictions: list[np.ndarray],
                 samples: list[tuple[str, np.ndarray, np.ndarray]]) -> int:
    if args.num_classes:
        return int(args.num_classes)
    if model_classes:
        return model_classes
    seen = max(max(int(p.max()) for p in predictions), max(int(l[l != IGNORE_INDEX].max(initial=0)) for _, _, l in samples))
    print(f"warning: the convert output does not record the class count; using {seen + 1}, the largest id seen + 1 "
          "(--num-classes sets it)", file=sys.stderr)
    return seen + 1


def _check_labels(samples: list[tuple[str, np.ndarray, np.ndarray]], classes: int, labels: Path | None) -> None:
    """Labels hold class ids below `classes` or the ignore index; anything else means a wrong label format."""
    for name, _, label in samples:
        bad = label[(label != IGNORE_INDEX) & (label >= classes)]
        if bad.size:
            where = labels / f"{Path(name).stem}.png" if labels else name
            raise ConfigError(f"label has class id {int(bad.max())}, the model has {classes} classes", path=where,
                              note=f"{bad.size:,} pixels above {classes - 1} (255 = ignore)",
                              hint="labels must be class ids (palette or grayscale PNG), or pass --num-classes")


def run(args: argparse.Namespace) -> int:
    model = args.model or restore_default_model()
    samples = list(_samples(args))
    reference = None
    if args.reference == "paddle":
        reference = load_reference(_paddle_model_dir(model))
    # images are read by OpenCV here, as Paddle Inference reads them: labels compare bit-exact
    with Segmenter(model, backend=args.backend, max_batch=args.batch, decoder="cpu") as segmenter:
        print(f"backend: {segmenter.backend} ({segmenter.choice.reason})")
        segmenter.predict([samples[0][1]])  # warm-up: kernels, cuDNN algorithms, thread pools
        started = time.perf_counter()
        predictions = segmenter.predict([image for _, image, _ in samples])
        seconds = time.perf_counter() - started
    classes = _class_count(args, segmenter.num_classes, predictions, samples)
    _check_labels(samples, classes, args.labels)
    confusion = Confusion(classes)
    for prediction, (_, _, label) in zip(predictions, samples):
        confusion.add(prediction, label)
    report = {
        "backend": segmenter.backend, "images": len(samples), "miou": confusion.mean_iou(),
        "class_iou": confusion.class_iou().round(6).tolist(), "pixel_accuracy": confusion.pixel_accuracy(),
        "images_per_second": len(samples) / seconds,
    }
    if reference is not None:
        paddle_confusion = Confusion(classes)
        agree = []
        for (_, image, label), pred in zip(samples, predictions):
            theirs = reference.segment(image)
            paddle_confusion.add(theirs, label)
            agree.append(np.mean(theirs == pred))
        report["paddle_pixel_agreement"] = float(np.mean(agree))
        report["paddle_miou"] = paddle_confusion.mean_iou()
    if args.out is not None:
        write_json_atomic(args.out, report)
    print(f"mIoU {report['miou']:.4f}  pixel accuracy {report['pixel_accuracy']:.4f}  "
          f"{report['images_per_second']:.1f} img/s" +
          (f"  Paddle Inference mIoU {report['paddle_miou']:.4f}, pixel agreement "
           f"{report['paddle_pixel_agreement']:.5f}" if reference is not None else "") +
          (f"  -> {args.out}" if args.out is not None else ""))
    print("class IoU: " + " ".join(f"{i}={v:.3f}" for i, v in enumerate(report["class_iou"])))
    return 0
