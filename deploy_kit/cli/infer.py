"""Segment images: a palette PNG label map per image, at the image's size (and an overlay).

  deploy-kit infer image.png [more.jpg dir/ 'glob/*.png'] [--model build/] [-o out/]
      [--backend auto|tensorrt|tensorrt-rtx|onnxruntime-cuda|onnxruntime-cpu] [--batch N] [--overlay] [--device 0]
      [--crop-size W,H [--stride W,H]]

--model takes a convert output folder or a PaddleSeg inference folder (converted on the fly, cached);
without it, the shipped demo model. Outputs mirror the inputs' layout under -o (a folder keeps its
subfolders); they never overwrite an input or each other.

Exit codes: 0 every image segmented, 1 some images failed (each has its error line), 2 a bad option or model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..backends import registry
from ..errors import EXIT_OK, EXIT_SOME_FAILED, DeployKitError
from ..paddleseg.demo import restore_default_model
from ..paddleseg.slide import parse_pair
from ..files import segment_files
from ..images import DEFAULT_MAX_PIXELS, collect_inputs, plan_outputs
from ..segmenter import Segmenter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files, folders or quoted globs")
    parser.add_argument("--model", type=Path, help="convert output or PaddleSeg export (default: the shipped demo model)")
    parser.add_argument("-o", "--out", type=Path, default=Path("out"), help="output folder")
    parser.add_argument("--backend", default=registry.AUTO, choices=registry.names(), help=registry.HELP)
    parser.add_argument("--batch", type=int, default=1, help="images per inference")
    parser.add_argument("--overlay", action="store_true", help="also write <name>_overlay.jpg")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--workers", type=int, help="threads that decode, and as many that write (default: half the CPUs each)")
    parser.add_argument("--crop-size", help="sliding-window inference with crops of W,H, as PaddleSeg's "
                        "test_config is_slide (needs a model exported with --output_op none)")
    parser.add_argument("--stride", help="sliding-window step W,H (default: two thirds of --crop-size)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse larger images before decoding")


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
                    TimeRemainingColumn(),
                    console=console, disable=not console.is_terminal or total < 2)


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise DeployKitError(f"--batch {args.batch} is not a batch size", hint="use --batch 1 or more")
    inputs, failures = collect_inputs(args.images)
    plans, warnings, refused = plan_outputs(inputs, args.out)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    for error in failures + refused:
        print(f"error: {error.one_line()}", file=sys.stderr)
    _check_output_folder(args.out)
    total = len(plans) + len(refused) + len(failures)
    done, rate = 0, ""
    if plans:
        with Segmenter(args.model or restore_default_model(), backend=args.backend, device=args.device,
                       max_batch=args.batch, crop_size=parse_pair(args.crop_size, "--crop-size") if args.crop_size else None,
                       stride=parse_pair(args.stride, "--stride") if args.stride else None) as segmenter:
            print(f"backend: {segmenter.backend} ({segmenter.choice.reason})")
            with _progress(len(plans)) as progress:
                task = progress.add_task("segment", total=len(plans), rate=0.0)
                report = segment_files(segmenter, plans, args.overlay, args.max_pixels, args.workers,
                                       on_error=lambda line: print(f"error: {line}", file=sys.stderr),
                                       on_done=lambda count: progress.update(task, completed=count))
        done = sum(1 for label in report.written if label.is_file())
        rate = f" ({done / report.seconds:.1f} img/s)" if done else ""
    print(f"{done}/{total} images segmented into {args.out}/{rate}; {total - done} failed")
    return EXIT_OK if done == total else EXIT_SOME_FAILED
