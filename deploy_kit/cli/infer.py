"""Segment images: a palette PNG label map per image, at the image's size (and an overlay).

  deploy-kit infer image.png [more.jpg dir/ 'glob/*.png'] [--model build/] [-o out/]
      [--backend auto|tensorrt|tensorrt-rtx|onnxruntime-cuda|onnxruntime-cpu] [--batch N] [--overlay] [--device 0]

--model takes a convert output folder or a PaddleSeg inference folder (converted on the fly, cached);
without it, the shipped demo model. Exit code: the number of images that failed (0 when all worked).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..backends import registry
from ..errors import DeployKitError, InputImageError
from ..paddleseg.demo import restore_default_model
from ..images import DEFAULT_MAX_PIXELS, expand_inputs, read_image, write_label_png, write_overlay
from ..segmenter import Segmenter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files, folders or quoted globs")
    parser.add_argument("--model", type=Path, help="convert output or PaddleSeg export (default: shipped demo model)")
    parser.add_argument("-o", "--out", type=Path, default=Path("out"), help="output folder (default: out/)")
    parser.add_argument("--backend", default="auto", choices=registry.names())
    parser.add_argument("--batch", type=int, default=1, help="images per inference (default: 1)")
    parser.add_argument("--overlay", action="store_true", help="also write <name>_overlay.jpg")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default: 0)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse larger images before decoding (default: {DEFAULT_MAX_PIXELS:,})")


def _default_model() -> Path:
    return restore_default_model()


def _check_output_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".deploy-kit-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DeployKitError("cannot write to the output folder", path=out, note=exc.strerror,
                             hint="pick a writable folder with -o") from None


def _progress(total: int):  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(TextColumn("segmenting"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]:.1f} img/s"), TimeRemainingColumn(),
                    console=console, disable=not console.is_terminal or total < 2)


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise DeployKitError(f"--batch {args.batch} is not a batch size", hint="use --batch 1 or more")
    paths, failures = expand_inputs(args.images)
    for error in failures:
        print(f"error: {error.one_line()}", file=sys.stderr)
    _check_output_folder(args.out)
    failed = len(failures)
    if not paths:
        return min(max(failed, 1), 125)
    with Segmenter(args.model or _default_model(), backend=args.backend, device=args.device,
                   max_batch=args.batch) as segmenter:
        print(f"backend: {segmenter.backend} ({segmenter.choice.reason})")
        started, done = time.perf_counter(), 0
        with _progress(len(paths)) as progress:
            task = progress.add_task("segment", total=len(paths), rate=0.0)
            for start in range(0, len(paths), args.batch):
                chunk = paths[start:start + args.batch]
                failed += _segment_chunk(segmenter, chunk, args)
                done += len(chunk)
                progress.update(task, advance=len(chunk), rate=done / (time.perf_counter() - started))
    rate = len(paths) / (time.perf_counter() - started)
    print(f"{len(paths) - (failed - len(failures))}/{len(paths)} images segmented into {args.out}/ "
          f"({rate:.1f} img/s); {failed} failed")
    return min(failed, 125)


def _segment_chunk(segmenter, chunk: list[Path], args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    images: list[tuple[Path, np.ndarray]] = []
    failed = 0
    for path in chunk:
        try:
            images.append((path, read_image(path, args.max_pixels)))
        except InputImageError as exc:
            print(f"error: {exc.one_line()}", file=sys.stderr)
            failed += 1
    if not images:
        return failed
    try:
        labels = segmenter.predict([image for _, image in images])
    except DeployKitError as exc:
        for path, _ in images:
            print(f"error: {path}: {exc.one_line()}", file=sys.stderr)
        return failed + len(images)
    for (path, image), label in zip(images, labels):
        try:
            write_label_png(args.out / f"{path.stem}.png", label)
            if args.overlay:
                write_overlay(args.out / f"{path.stem}_overlay.jpg", image, label)
        except OSError as exc:
            print(f"error: {args.out / path.stem}: cannot write the result · Note: {exc.strerror}", file=sys.stderr)
            failed += 1
    return failed
