"""Where the time goes: per-stage timings, engine-only latency, end-to-end latency and overlapped
throughput of the GPU pipeline, against a baseline written the way PaddleSeg's deploy scripts work
(OpenCV + numpy on the CPU, synchronous inference), on the same images in the same run."""

from __future__ import annotations

import collections

import importlib.util
import platform
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from .cuda import Event, check_cuda
from .doctor import read_machine
from .fileio import atomic_output, write_bytes_atomic, write_json_atomic
from .paddleseg.postprocess import postprocess_cpu
from .paddleseg.preprocess import preprocess_cpu
from .paddleseg.reference import load_reference
from .segmenter import Segmenter


@dataclass
class BenchConfig:
    model: Path
    images: list[np.ndarray]
    encoded: list[bytes]  # the same images as files, for the decode stage
    batches: tuple[int, ...] = (1, 4, 8)
    iterations: int = 50
    warmup: int = 10
    in_flight: int = 3
    backend: str = "auto"
    baseline: bool = True
    precision: str | None = None  # which converted graph ONNX Runtime runs (default: the converted one)
    cuda_graph: bool = False


@dataclass
class Summary:
    mean: float
    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        values = np.asarray(samples, dtype=np.float64)
        return cls(float(values.mean()), *(float(np.percentile(values, q)) for q in (50, 90, 99)))


@dataclass
class BatchResult:
    batch: int
    stages_ms: dict[str, Summary] = field(default_factory=dict)
    engine_only_ms: Summary | None = None
    end_to_end_ms: Summary | None = None
    throughput: float = 0.0  # images/s with batches in flight, decoded images in host memory
    engine_only_throughput: float = 0.0
    baseline_throughput: float | None = None


class GpuUtilization:
    """Samples `nvidia-smi`'s utilization.gpu every 100 ms while open; mean and samples, or None."""

    def __init__(self, device: int) -> None:
        self.device, self.samples = device, list[float]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        command = ["nvidia-smi", f"--id={self.device}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self._stop.wait(0.1):
            try:
                self.samples.append(float(subprocess.run(command, capture_output=True, text=True, timeout=2).stdout))
            except (OSError, ValueError, subprocess.TimeoutExpired):
                return  # no nvidia-smi here: no utilisation to report

    def __enter__(self) -> GpuUtilization:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def timed(fn: Callable[[], Any], iterations: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def machine_info() -> dict[str, Any]:
    r = read_machine()
    info: dict[str, Any] = {"host": platform.node(), "cpu": platform.processor() or platform.machine(),
                            "driver": r.driver_version, "driver_cuda": r.driver_cuda, "cuda_runtime": r.cuda_runtime,
                            "cudnn": r.cudnn, "tensorrt": f"{r.tensorrt_flavor} {r.tensorrt_version}" if r.tensorrt_flavor else None,
                            "onnxruntime": r.onnxruntime,
                            "gpus": [asdict(g) for g in r.gpus]}
    info.update(_jetson_info())
    return info


def _jetson_info() -> dict[str, Any]:
    """Power mode and one tegrastats line on a Jetson; nothing elsewhere."""
    info: dict[str, Any] = {}
    for key, command in (("power_mode", ["nvpmodel", "-q"]), ("tegrastats", ["tegrastats", "--interval", "500"])):
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=2).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            out = getattr(exc, "stdout", None) or ""
            if isinstance(out, bytes):
                out = out.decode(errors="replace")
        if out.strip():
            info[key] = out.strip().splitlines()[0]
    return info


def _gpu_used_bytes() -> int:
    from cuda.bindings import driver

    free, total = check_cuda(driver.cuMemGetInfo())
    return int(total - free)


def run_gpu_benchmark(config: BenchConfig) -> dict[str, Any]:
    results: list[BatchResult] = []
    memory: dict[str, int] = {}
    with Segmenter(config.model, backend=config.backend, max_batch=max(config.batches), precision=config.precision,
                   cuda_graph=config.cuda_graph, in_flight=config.in_flight) as segmenter:
        if segmenter.pipeline is None:
            raise RuntimeError(f"the {segmenter.backend} backend has no GPU pipeline; use run_cpu_benchmark")
        memory["after_load"] = _gpu_used_bytes()
        segmenter.pipeline.timing = True
        for batch in config.batches:
            results.append(_bench_batch(segmenter, config, batch))
        memory["peak_after_runs"] = _gpu_used_bytes()
        backend, reason = segmenter.backend, segmenter.choice.reason
    return {"backend": backend, "backend_reason": reason, "precision": config.precision or "as converted",
            "cuda_graph": config.cuda_graph, "gpu_memory_used_bytes": memory,
            "batches": [asdict(r) for r in results]}


def _bench_batch(segmenter, config: BenchConfig, batch: int) -> BatchResult:  # type: ignore[no-untyped-def]
    pipeline = segmenter.pipeline
    images = [config.images[i % len(config.images)] for i in range(batch)]
    result = BatchResult(batch)
    result.stages_ms["decode"] = Summary.of(timed(
        lambda: [cv2.imdecode(np.frombuffer(config.encoded[i % len(config.encoded)], np.uint8), cv2.IMREAD_COLOR)
                 for i in range(batch)], max(5, config.iterations // 5), 1))
    stage_samples: dict[str, list[float]] = {k: [] for k in ("upload", "preprocess", "inference", "postprocess", "download")}
    end_to_end = []
    for i in range(config.warmup + config.iterations):
        start = time.perf_counter()
        pipeline.run(images)
        elapsed = (time.perf_counter() - start) * 1000
        if i >= config.warmup:
            end_to_end.append(elapsed)
            for name, value in asdict(pipeline.times).items():
                if name in stage_samples:  # not the hardware JPEG decoder's: these images come decoded
                    stage_samples[name].append(value)
    result.stages_ms.update({name: Summary.of(v) for name, v in stage_samples.items()})
    result.end_to_end_ms = Summary.of(end_to_end)
    shape = pipeline.input_shape(batch, *images[0].shape[:2])  # images of one size: a dynamic model's batch
    result.engine_only_ms = Summary.of(engine_only_samples(pipeline, shape, config.warmup, config.iterations))
    result.engine_only_throughput = batch / (result.engine_only_ms.mean / 1000)
    result.throughput = _overlapped_throughput(segmenter.pipeline, images, config)
    if config.baseline:
        result.baseline_throughput = _baseline_throughput(segmenter, images, config)
    return result


def engine_only_samples(pipeline, shape: tuple[int, ...], warmup: int,  # type: ignore[no-untyped-def]
                        iterations: int) -> list[float]:
    """Milliseconds of inference alone on device-resident buffers, like `trtexec --noDataTransfers`."""
    samples = []
    with Event() as start, Event() as end:
        for i in range(warmup + iterations):
            start.record(pipeline.stream)
            pipeline.infer(shape)
            end.record(pipeline.stream)
            end.synchronize()
            if i >= warmup:
                samples.append(end.elapsed_ms(start))
    return samples


def _overlapped_throughput(pipeline, images, config: BenchConfig) -> float:  # type: ignore[no-untyped-def]
    """Images/s with `config.in_flight` batches in flight: while one batch computes, the next uploads."""
    staged = [pipeline.stage(image) for image in images]  # decode threads stage images in `infer`
    for _ in range(2):
        pipeline.result(pipeline.submit(staged))
    in_flight: collections.deque[Any] = collections.deque()
    start = time.perf_counter()
    for _ in range(config.iterations):
        if len(in_flight) == pipeline.in_flight:
            pipeline.result(in_flight.popleft())
        in_flight.append(pipeline.submit(staged))
    while in_flight:
        pipeline.result(in_flight.popleft())
    return config.iterations * len(images) / (time.perf_counter() - start)


def _baseline_throughput(segmenter, images, config: BenchConfig) -> float:  # type: ignore[no-untyped-def]
    """PaddleSeg-deploy style: OpenCV resize + normalize on the CPU, a synchronous run from numpy,
    numpy argmax on the host, nearest resize back: the same model through ONNX Runtime CUDA."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(segmenter.model.onnx), providers=["CUDAExecutionProvider"])
    name = session.get_inputs()[0].name

    def once() -> None:
        batch = np.stack([preprocess_cpu(im, segmenter.spec) for im in images])
        outputs = session.run(None, {name: batch})[0]
        [postprocess_cpu(out, im.shape[:2]) for out, im in zip(outputs, images)]

    samples = timed(once, max(5, config.iterations // 5), 2)
    return len(images) / (float(np.mean(samples)) / 1000)


def run_cpu_benchmark(config: BenchConfig, paddle_model: Path | None) -> dict[str, Any]:
    """ONNX Runtime CPU against Paddle Inference CPU, same model and images, whole pipeline per image."""
    report: dict[str, Any] = {"backend": "onnxruntime-cpu", "batches": []}
    with Segmenter(config.model, backend="onnxruntime-cpu", max_batch=max(config.batches),
                   precision=config.precision) as segmenter:
        for batch in config.batches:
            images = [config.images[i % len(config.images)] for i in range(batch)]
            ort_ms = timed(lambda: segmenter.predict(images), config.iterations, config.warmup)
            entry: dict[str, Any] = {"batch": batch, "onnxruntime_cpu_ms": asdict(Summary.of(ort_ms)),
                                     "onnxruntime_cpu_images_per_s": batch / (np.mean(ort_ms) / 1000)}
            if paddle_model is not None:
                reference = load_reference(paddle_model)
                paddle_ms = timed(lambda: [reference.segment(im) for im in images], config.iterations, config.warmup)
                entry["paddle_inference_cpu_ms"] = asdict(Summary.of(paddle_ms))
                entry["paddle_inference_cpu_images_per_s"] = batch / (np.mean(paddle_ms) / 1000)
            report["batches"].append(entry)
    return report


def write_results(report: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """JSON, CSV and a PNG chart of one benchmark report."""
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **report}
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_json_atomic(out / f"{stem}.json", report)]
    rows = ["batch,metric,mean,p50,p90,p99"]
    for entry in report["batches"]:
        for key, value in entry.items():
            if isinstance(value, dict) and "mean" in value:
                rows.append(f"{entry['batch']},{key},{value['mean']:.4f},{value['p50']:.4f},{value['p90']:.4f},{value['p99']:.4f}")
            elif isinstance(value, dict):
                rows += [f"{entry['batch']},{key}.{k},{v['mean']:.4f},{v['p50']:.4f},{v['p90']:.4f},{v['p99']:.4f}"
                         for k, v in value.items()]
            elif isinstance(value, (int, float)) and key != "batch":
                rows.append(f"{entry['batch']},{key},{value:.4f},,,")
    paths.append(write_bytes_atomic(out / f"{stem}.csv", ("\n".join(rows) + "\n").encode()))
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib is not installed: no chart (pip install 'deploy-kit[bench]' adds it)")
    else:
        paths.append(_chart(report, out / f"{stem}.png"))
    return paths


def _chart(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = report["batches"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [str(e["batch"]) for e in entries]
    if "stages_ms" in entries[0]:
        bottom = np.zeros(len(entries))
        for stage in ("decode", "upload", "preprocess", "inference", "postprocess", "download"):
            values = np.array([e["stages_ms"][stage]["mean"] for e in entries])
            axes[0].bar(labels, values, bottom=bottom, label=stage)
            bottom += values
        axes[0].set_title("mean time per batch by stage (ms)")
        series = {"pipeline, batches in flight": [e["throughput"] for e in entries],
                  "engine only": [e["engine_only_throughput"] for e in entries],
                  "PaddleSeg-style baseline": [e.get("baseline_throughput") or 0 for e in entries]}
        axes[0].set_xlabel("batch")
        axes[0].legend(fontsize=8)
    else:  # latency and throughput of both runtimes, side by side
        latency = {"ONNX Runtime CPU": [e["onnxruntime_cpu_ms"]["mean"] for e in entries],
                   "Paddle Inference CPU": [e.get("paddle_inference_cpu_ms", {}).get("mean", 0) for e in entries]}
        _grouped_bars(axes[0], labels, latency, "mean latency per batch (ms)")
        series = {"ONNX Runtime CPU": [e["onnxruntime_cpu_images_per_s"] for e in entries],
                  "Paddle Inference CPU": [e.get("paddle_inference_cpu_images_per_s", 0) for e in entries]}
    _grouped_bars(axes[1], labels, series, "throughput (images/s)")
    gpus = report.get("machine", {}).get("gpus") or [{"name": report.get("machine", {}).get("cpu", "CPU")}]
    fig.suptitle(f"{report.get('model_name', 'model')} on {gpus[0]['name']} ({report['backend']}), {report['date'][:10]}")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _grouped_bars(axis: Any, labels: list[str], series: dict[str, list[float]], title: str) -> None:
    width = 0.8 / len(series)
    for k, (name, heights) in enumerate(series.items()):
        axis.bar(np.arange(len(labels)) + k * width, heights, width, label=name)
    axis.set_xticks(np.arange(len(labels)) + width * (len(series) - 1) / 2, labels)
    axis.set_title(title)
    axis.set_xlabel("batch")
    axis.legend(fontsize=8)
