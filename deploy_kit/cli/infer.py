"""Segment images: a palette PNG label map per image, at the image's size (and an overlay).

  deploy-kit infer image.png [more.jpg dir/ 'glob/*.png'] [--model build/] [-o out/]
      [--backend auto|tensorrt|tensorrt-rtx|onnxruntime-cuda|onnxruntime-cpu] [--batch N] [--overlay] [--device 0]
      [--crop-size W,H [--stride W,H]] [--ray [ADDRESS] [--actors MIN:MAX] [--gpus-per-worker F] [--skip-existing]]

--model takes a convert output folder or a PaddleSeg inference folder (converted on the fly, cached);
without it, the shipped demo model. Outputs mirror the inputs' layout under -o (a folder keeps its
subfolders); they never overwrite an input or each other.

Exit codes: 0 every image segmented, 1 some images failed (each has its error line), 2 a bad option or model.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from ..backends import registry
from ..errors import EXIT_OK, EXIT_SOME_FAILED, ConfigError, DeployKitError
from ..paddleseg.demo import restore_default_model
from ..paddleseg.slide import parse_pair
from ..files import segment_files
from ..images import DEFAULT_MAX_PIXELS, collect_inputs, plan_outputs
from ..segmenter import DECODER_HELP, DECODERS, Segmenter
from ..video.sinks import LABEL_OUTPUTS, SinkOptions, parse_background
from ..video.sources import expand_video_inputs, is_video_input


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files, folders or quoted globs; video files, rtsp/rtmp/http(s) "
                        "streams, a camera index or /dev/videoN, or a .txt file listing such sources")
    parser.add_argument("--model", type=Path, help="convert output or PaddleSeg export (default: the shipped demo model)")
    parser.add_argument("-o", "--out", default="out", help="output folder (with --ray also s3://, gs://, hdfs://, abfs://)")
    parser.add_argument("--backend", default=registry.AUTO, choices=registry.names(), help=registry.HELP)
    parser.add_argument("--batch", type=int, default=1, help="images per inference")
    parser.add_argument("--overlay", action="store_true", help="also write <name>_overlay.jpg")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--decoder", default="auto", choices=DECODERS, help=DECODER_HELP)
    parser.add_argument("--workers", type=int, help="threads that decode, and as many that write (default: half the CPUs each)")
    parser.add_argument("--crop-size", help="sliding-window inference with crops of W,H, as PaddleSeg's "
                        "test_config is_slide (needs a model exported with --output_op none)")
    parser.add_argument("--stride", help="sliding-window step W,H (default: two thirds of --crop-size)")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="run on a Ray cluster: alone, a local one (one actor per GPU); else its address "
                             "(auto, or host:port); sources and -o may then be s3://, gs://, ... (pip install "
                             "'deploy-kit[ray]')")
    parser.add_argument("--actors", default=None, metavar="MIN:MAX",
                        help="with --ray: Ray actors, each holding one model (default: one per GPU, or per CPU)")
    parser.add_argument("--gpus-per-worker", type=float, help="with --ray: GPUs per actor (a fraction shares one)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="with --ray: inputs whose outputs exist are not read again (resume a run)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse larger images before decoding")
    video = parser.add_argument_group("video sources")
    video.add_argument("--vid-stride", type=int, default=1, help="segment every Nth frame")
    video.add_argument("--labels", default="png", choices=LABEL_OUTPUTS,
                       help="video label maps: PNGs <name>/000000.png, a lossless grey video <name>_labels.mkv, or none")
    video.add_argument("--background", help="two-class models: write <name>_background.mp4, the background "
                       "replaced by this image or colour (#RRGGBB or R,G,B)")
    video.add_argument("--reconnect-timeout", type=float, default=10.0,
                       help="seconds a live source may send no frame (reconnecting meanwhile) before it ends")


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
    """A progress bar on a terminal, for more than one image; else none, and rich is not imported (a
    fortieth of a one-image `infer`'s start-up)."""
    if total < 2 or not sys.stderr.isatty():
        return _NoProgress()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(TextColumn("segmenting"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=console, disable=not console.is_terminal)


class _NoProgress:
    """What `_progress` shows when it shows nothing: the calls a rich Progress takes."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, **fields: object) -> int:
        return 0

    def update(self, task: int, **fields: object) -> None:
        pass


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise DeployKitError(f"--batch {args.batch} is not a batch size", hint="use --batch 1 or more")
    ray_only = [name for name in ("actors", "gpus_per_worker", "skip_existing") if getattr(args, name)]
    if args.ray is None and ray_only:
        raise ConfigError(f"--{ray_only[0].replace('_', '-')} goes with --ray", hint="add --ray, or drop it")
    return _run_on_ray(args) if args.ray is not None else _run_here(args)


def _run_here(args: argparse.Namespace) -> int:
    out = Path(args.out)
    videos, source_failures = expand_video_inputs([item for item in args.images if is_video_input(item)])
    inputs, image_failures = collect_inputs([item for item in args.images if not is_video_input(item)])
    failures: list[DeployKitError] = [*source_failures, *image_failures]
    plans, warnings, refused = plan_outputs(inputs, out)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    for error in failures + refused:
        print(f"error: {error.one_line()}", file=sys.stderr)
    _check_output_folder(out)
    total = len(plans) + len(refused) + len(failures)
    done, rate, video_ok = 0, "", True
    if plans or videos:
        with Segmenter(args.model or restore_default_model(), backend=args.backend, device=args.device,
                       max_batch=args.batch, crop_size=parse_pair(args.crop_size, "--crop-size") if args.crop_size else None,
                       stride=parse_pair(args.stride, "--stride") if args.stride else None,
                       decoder=args.decoder if plans or args.decoder != "gpu" else "auto") as segmenter:
            print(segmenter.describe())
            if plans:
                with _progress(len(plans)) as progress:
                    task = progress.add_task("segment", total=len(plans), rate=0.0)
                    report = segment_files(segmenter, plans, args.overlay, args.max_pixels, args.workers,
                                           on_error=lambda line: print(f"error: {line}", file=sys.stderr),
                                           on_done=lambda count: progress.update(task, completed=count))
                done = sum(1 for label in report.written if label.is_file())
                rate = f" ({done / report.seconds:.1f} img/s)" if done else ""
            if videos:
                video_ok = _run_videos(segmenter, videos, out, args)
    if plans or not videos:
        print(f"{done}/{total} images segmented into {out}/{rate}; {total - done} failed")
    return EXIT_OK if done == total and video_ok else EXIT_SOME_FAILED


def _run_videos(segmenter: Segmenter, sources: list[str], out: Path, args: argparse.Namespace) -> bool:
    """Segments the video sources; whether every one was read to its end without a failed frame."""
    if importlib.util.find_spec("av") is None:
        raise ConfigError("video sources need PyAV", hint="pip install 'deploy-kit[video]'")
    from ..video.run import VideoOptions, segment_videos
    from ..video.sinks import h264_encoder

    if args.vid_stride < 1:
        raise ConfigError(f"--vid-stride {args.vid_stride} is not a stride", hint="use 1 or more")
    background = parse_background(args.background) if args.background else None
    if background is not None and segmenter.num_classes not in (None, 2):
        raise ConfigError(f"--background needs a two-class model (foreground, background); this one has "
                          f"{segmenter.num_classes} classes", hint="drop --background, or use --overlay")
    options = VideoOptions(args.vid_stride, args.reconnect_timeout,
                           SinkOptions(overlay=args.overlay, labels=args.labels, background=background), args.decoder)
    report = segment_videos(segmenter, sources, out, options, on_event=lambda line: print(line, file=sys.stderr))
    decoders = ", ".join(f"{name}: {decoder}" for name, decoder in report.decoders.items())
    encoded = f"; videos encoded by {h264_encoder()}" if args.overlay or background is not None else ""
    print(report.summary() + f"; decoded by {decoders}{encoded}; outputs in {out}/")
    return not report.errors and not any(report.failed.values())


def _run_on_ray(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("--ray needs Ray", hint="pip install 'deploy-kit[ray]'")
    if args.crop_size:
        raise ConfigError("--crop-size does not run with --ray yet", hint="drop --ray, or --crop-size")
    from ..cluster import ClusterOptions, segment_dataset

    low, high = _actor_range(args.actors)
    options = ClusterOptions(address=None if args.ray == "local" else args.ray, backend=args.backend,
                             batch=args.batch,
                             gpus_per_worker=args.gpus_per_worker, min_workers=low, max_workers=high,
                             overlay=args.overlay, skip_existing=args.skip_existing, max_pixels=args.max_pixels,
                             decoder=args.decoder)
    report = segment_dataset(args.images, args.out, args.model or restore_default_model(), options,
                             on_error=lambda line: print(f"error: {line}", file=sys.stderr))
    total = report.written + report.skipped + len(report.failed)
    rate = f" ({report.written / report.seconds:.1f} img/s)" if report.written else ""
    for worker in report.workers:
        print(f"Ray actor {worker}")
    print(f"{report.written}/{total} images segmented into {args.out}/ on Ray{rate}; {report.skipped} skipped "
          f"(their outputs existed); {len(report.failed)} failed; manifest {report.manifest}")
    return EXIT_OK if not report.failed else EXIT_SOME_FAILED


def _actor_range(text: str | None) -> tuple[int, int | None]:
    if text is None:
        return 1, None
    try:
        low, _, high = text.partition(":")
        values = int(low), int(high or low)
    except ValueError:
        values = (0, 0)
    if not 1 <= values[0] <= values[1]:
        raise ConfigError(f"bad --actors {text!r}", hint="give MIN:MAX with 1 <= MIN <= MAX, e.g. 1:4")
    return values
