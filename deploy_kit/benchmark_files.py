"""The benchmark's "from files" rows: the real `infer` pipeline from image files on disk to label PNGs on
disk (decode pool, batches, writer pool), images/s and GPU utilisation for each batch size, next to the
engine alone; and the latency of one image from its JPEG bytes to its label map in host memory."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .benchmark import GpuUtilization, Summary, timed
from .files import segment_files
from .images import collect_inputs, plan_outputs
from .segmenter import Segmenter


def from_files(model: Path, folder: Path, batches: tuple[int, ...], backend: str, overlay: bool = False,
               workers: int | None = None, device: int = 0, decoder: str = "auto") -> list[dict[str, Any]]:
    """One row per batch size: images/s of `infer` from `folder`'s files into a scratch folder."""
    rows = []
    inputs, _ = collect_inputs([str(folder)])
    for batch in batches:
        with Segmenter(model, backend=backend, device=device, max_batch=batch, decoder=decoder) as segmenter, \
                tempfile.TemporaryDirectory(prefix="deploy-kit-bench-") as scratch:
            plans, _, _ = plan_outputs(inputs, Path(scratch))
            segment_files(segmenter, plans[:2 * batch], overlay, workers=workers)  # warm-up: kernels, graphs
            with GpuUtilization(device) as utilization:
                report = segment_files(segmenter, plans, overlay, workers=workers)
            rows.append({"batch": batch, "overlay": overlay, "images": len(report.written),
                         "failed": len(report.failed), "images_per_s": len(report.written) / report.seconds,
                         "gpu_utilization_percent": utilization.mean, "backend": segmenter.backend,
                         "decoder": segmenter.decoder})
    return rows


def jpeg_to_labels_ms(model: Path, jpeg: bytes, backend: str, iterations: int = 30,
                      device: int = 0, decoder: str = "auto") -> dict[str, Any]:
    """Latency of one image from JPEG bytes to the label map in host memory (read, decode, predict)."""
    with Segmenter(model, backend=backend, device=device, max_batch=1, decoder=decoder) as segmenter:
        samples = timed(lambda: segmenter.predict_loaded([segmenter.load_bytes(jpeg, "benchmark.jpg")]),
                        iterations, warmup=3)
        return {**asdict(Summary.of(samples)), "decoder": segmenter.decoder}
