"""`Segmenter`: the Python API behind `deploy-kit infer`.

    with Segmenter("build/") as seg:
        labels = seg.predict([cv2.imread("street.png")])

It takes a `convert` output folder or a PaddleSeg inference folder (converted on the fly into the
cache), picks the best backend that works here and says why, and returns uint8 label maps at each
image's original size.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..compat import TensorRTFeatures, probe_tensorrt
from ..errors import ConfigError, EngineCompatibilityError
from ..doctor import blocking_errors, engine_problems, fast_readings
from ..gpu import detect_gpus
from .postprocess import postprocess_cpu
from .preprocess import PreprocessSpec, preprocess_cpu

log = logging.getLogger(__name__)
BACKENDS = ("auto", "tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")


@dataclass(frozen=True)
class ConvertedModel:
    """A `convert` output folder: ONNX graphs, optional engines and the preprocessing to apply."""

    folder: Path
    onnx: Path  # the FP32 graph
    preprocessing: dict[str, Any]
    precision: str = "fp32"  # what convert was asked for; its graph is model.<precision>.onnx

    def graph(self, precision: str) -> Path:
        path = self.onnx if precision == "fp32" else self.folder / f"model.{precision}.onnx"
        if not path.is_file():
            raise ConfigError(f"no {precision} graph in this convert output", path=self.folder,
                              hint=f"deploy-kit convert MODEL -o {self.folder} --precision {precision}")
        return path

    def engine_for(self, features: TensorRTFeatures) -> tuple[Path, dict[str, Any]] | None:
        engine = self.folder / features.engine_name
        meta = engine.with_name(engine.name + ".json")
        if engine.is_file() and meta.is_file():
            return engine, json.loads(meta.read_text())
        return None


def open_model(model: Path) -> ConvertedModel:
    """Reads a convert output folder, or converts a PaddleSeg inference folder into the cache first."""
    if (model / "convert.json").is_file():
        report = json.loads((model / "convert.json").read_text())
        if "preprocessing" not in report:
            raise ConfigError("convert output is incomplete", path=model,
                              hint=f"run deploy-kit convert MODEL -o {model} --force")
        return ConvertedModel(model, model / "model.opt.onnx", report["preprocessing"],
                              report.get("options", {}).get("precision", "fp32"))
    if (model / "deploy.yaml").is_file():
        return open_model(_convert_into_cache(model))
    raise ConfigError("not a model folder", path=model,
                      hint="pass a deploy-kit convert output (convert.json) or a PaddleSeg export (deploy.yaml)")


def _convert_into_cache(model: Path) -> Path:
    from ..config import ConvertOptions
    from ..fileio import sha256_json
    from ..models import cache_root
    from ..pipeline import convert

    out = cache_root() / "converted" / sha256_json(str(model.resolve()))[:16]
    features = probe_tensorrt()
    options = ConvertOptions(onnx_only=features is None or not detect_gpus())
    convert(model, out, options, lambda stage: log.info("convert %s: %s", stage.name, stage.status))
    return out


@dataclass(frozen=True)
class BackendChoice:
    name: str
    reason: str
    engine: Path | None = None
    features: TensorRTFeatures | None = None


def choose_backend(model: ConvertedModel, wanted: str, device: int) -> BackendChoice:
    """The best backend that can run here ('auto'), or the one asked for; each choice says why."""
    if wanted not in BACKENDS:
        raise ConfigError(f"unknown backend {wanted!r}", hint=f"use one of {', '.join(BACKENDS)}")
    readings = fast_readings()
    blocking = blocking_errors(readings)
    if blocking and wanted != "onnxruntime-cpu":
        raise EngineCompatibilityError(f"{blocking[0].name}: {blocking[0].value}", hint=blocking[0].fix)
    gpus = readings.gpus
    gpu = gpus[device] if device < len(gpus) else None
    reasons: list[str | None] = []
    if wanted in ("auto", "tensorrt"):
        features = probe_tensorrt()
        found = model.engine_for(features) if features else None
        problem: str | None = ("no TensorRT installed" if features is None else
                               f"no {features.flavor} engine in {model.folder}" if found is None else
                               "no CUDA GPU found" if gpu is None else None)
        if problem is None and found is not None and features is not None and gpu is not None:
            problems, hopeless = engine_problems(found[1], readings, device)
            if problems and not hopeless and model.onnx.is_file():
                log.warning("engine cannot run here (%s): rebuilding it from %s into the cache",
                            "; ".join(problems), model.onnx.name)
                from ..pipeline import rebuild_engine

                rebuilt = rebuild_engine(model.folder, features)
                return BackendChoice(features.flavor, f"engine rebuilt for {gpu.name} ({'; '.join(problems)})",
                                     rebuilt, features)
            problem = "; ".join(problems) or None
        if problem is None and found is not None and gpu is not None:
            return BackendChoice(features.flavor if features else "tensorrt",
                                 f"engine {found[0].name} runs on {gpu.name}", found[0], features)
        if wanted == "tensorrt":
            raise EngineCompatibilityError("cannot run the TensorRT engine", path=model.folder, note=problem,
                                           hint="use --backend auto, or rebuild: deploy-kit convert MODEL -o "
                                                f"{model.folder} --force on this machine")
        reasons.append(problem)
    if wanted in ("auto", "onnxruntime-cuda"):
        from .onnxruntime_cuda import cuda_provider_available

        problem = ("no CUDA GPU found" if gpu is None else
                   None if cuda_provider_available() else "onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        if problem is None and gpu is not None:
            return BackendChoice("onnxruntime-cuda", _why(reasons + [f"ONNX Runtime CUDA on {gpu.name}"]))
        if wanted == "onnxruntime-cuda":
            raise EngineCompatibilityError("cannot run ONNX Runtime CUDA", note=problem,
                                           hint="use --backend onnxruntime-cpu")
        reasons.append(problem)
    return BackendChoice("onnxruntime-cpu", _why(reasons + ["ONNX Runtime on the CPU"]))


def _why(reasons: list[str | None]) -> str:
    return "; ".join(dict.fromkeys(r for r in reasons if r))


class Segmenter:
    """Semantic segmentation of BGR uint8 images with a converted PaddleSeg model."""

    def __init__(self, model: Path | str, backend: str = "auto", device: int = 0, max_batch: int = 8,
                 precision: str | None = None, cuda_graph: bool = False) -> None:
        """`precision` picks the ONNX graph for ONNX Runtime: by default the converted precision on the
        GPU and FP32 on the CPU (where FP16 is emulated). `cuda_graph` replays inference as a captured
        CUDA graph (TensorRT only)."""
        self.cuda_graph = cuda_graph
        self.model = open_model(Path(model))
        self.spec = PreprocessSpec.from_metadata(self.model.preprocessing)
        self.choice = choose_backend(self.model, backend, device)
        if self.choice.name != "onnxruntime-cpu" and not self.spec.gpu_ready:
            log.warning("preprocessing has transforms without a GPU kernel: running on the CPU path")
            self.choice = BackendChoice("onnxruntime-cpu", "deploy.yaml transforms without a GPU kernel; "
                                        "ONNX Runtime on the CPU")
        self.max_batch = max_batch
        self._gpu: Any = None
        self._host: Any = None
        self._owned: list[Any] = []
        if self.choice.name == "onnxruntime-cpu":
            from .onnxruntime_cpu import OnnxRuntimeCpuExecutor

            self._host = OnnxRuntimeCpuExecutor(self.model.graph(precision or "fp32"))
            return
        try:
            self._open_gpu(device, self.model.graph(precision or self.model.precision))
        except BaseException:
            self.close()  # what was opened before the failure is released now, not at garbage collection
            raise

    def _open_gpu(self, device: int, graph: Path) -> None:
        from .cuda import CudaContext, Stream
        from .gpu_pipeline import GpuPipeline

        context = CudaContext(device)
        stream = Stream()
        self._owned = [stream, context]
        executor: Any
        if self.choice.engine is not None and self.choice.features is not None:
            from .tensorrt_executor import TensorRTExecutor

            executor = TensorRTExecutor(self.choice.engine, self.choice.features)
        else:
            from .onnxruntime_cuda import OnnxRuntimeCudaExecutor

            executor = OnnxRuntimeCudaExecutor(graph, device, stream)
        self._owned.insert(0, executor)
        self._gpu = GpuPipeline(executor, self.spec, context, stream, self.max_batch, self.cuda_graph)

    @property
    def backend(self) -> str:
        return self.choice.name

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """uint8 label maps, one per BGR uint8 HxWx3 image, at the image's size."""
        results: list[np.ndarray] = []
        for start in range(0, len(images), self.max_batch):
            chunk = list(images[start:start + self.max_batch])
            if self._gpu is not None:
                results.extend(self._gpu.run(chunk))
            else:
                batch = np.stack([preprocess_cpu(im, self.spec) for im in chunk])
                outputs = self._host.run(batch)
                results.extend(postprocess_cpu(out, (im.shape[0], im.shape[1])) for out, im in zip(outputs, chunk))
        return results

    def close(self) -> None:
        if self._gpu is not None:
            self._gpu.close()
            self._gpu = None
        for owned in self._owned:
            owned.close()
        self._owned = []

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
