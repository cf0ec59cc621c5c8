"""The conversion orchestrator: export → optimize → precision → build, each cached by the hash of its inputs.

A stage re-runs only when something it depends on changed (input file contents, an option, a tool
version) or its outputs are missing or altered; `convert.json` (see `artifact`) records every stage's
key, outputs, checksums and timings, and is rewritten atomically after each stage.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..version import __version__
from ..artifact import ACCURACY_NAME, ONNX_NAME, Artifact, ConvertReport, graph_name, write_engine_sidecar
from ..backends.tensorrt.build import BuildSpec, build_engine
from ..backends.tensorrt.features import TensorRTFeatures, probe_tensorrt
from ..errors import TensorRTMissingError
from ..fileio import cache_root, sha256_file, sha256_json
from ..machine import GpuInfo, detect_gpus
from ..paddleseg import pdiparams
from ..paddleseg.deploy_config import DeployConfig, load_deploy_config, resize_target_hw
from ..paddleseg.preprocess import PreprocessSpec
from .export import InputPlan, export_onnx, plan_input
from .options import BatchRange, ConvertOptions

if TYPE_CHECKING:
    from .precision import AccuracyData

OPT_NAME = graph_name("fp32")


@dataclass
class StageResult:
    name: str
    status: str  # done | up to date | stopped
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConvertResult:
    out_dir: Path
    plan: InputPlan
    stages: list[StageResult]
    engine: Path | None


Reporter = Callable[[StageResult], None]
StageWork = Callable[[], tuple[list[str], dict[str, Any]]]


def _tool_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _run_stage(report: ConvertReport, name: str, key_parts: dict[str, Any], reporter: Reporter,
               work: StageWork) -> StageResult:
    key = sha256_json({"stage": name, "deploy_kit": __version__, **key_parts})
    if report.is_fresh(name, key):
        entry = report.stage(name)
        result = StageResult(name, "up to date", 0.0, list(entry["outputs"]), dict(entry.get("details", {})))
    else:
        started = time.perf_counter()
        outputs, details = work()
        result = StageResult(name, "done", time.perf_counter() - started, outputs, details)
        report.record(name, key, result.status, result.seconds, outputs, details)
    reporter(result)
    return result


def preprocessing_of(deploy: DeployConfig, plan: InputPlan) -> dict[str, Any]:
    """The preprocessing the runtime must apply, from deploy.yaml; a fixed-shape model with no Resize gets
    one to its input size, so any image size works."""
    transforms = [dict(t) for t in deploy.transforms]
    added = resize_target_hw(deploy.transforms) is None and not plan.dynamic_hw
    if added:
        transforms.insert(0, {"type": "Resize", "target_size": [plan.width, plan.height], "added_by": "deploy-kit"})
    preprocessing = {"to_rgb": True, "transforms": transforms, "resize_added": added,
                     "model_input_hw": [plan.height, plan.width], "output_op": deploy.output_op}
    if plan.dynamic_hw:  # each image at its own size, as PaddleSeg's deploy pipeline feeds it
        hw_min, _, hw_max = plan.profile_hw()
        preprocessing.update({"dynamic_hw": True, "hw_min": list(hw_min), "hw_max": list(hw_max)})
    return preprocessing


def convert(model_dir: Path, out_dir: Path, options: ConvertOptions, reporter: Reporter,
            tensorrt: TensorRTFeatures | None = None, device: int = 0) -> ConvertResult:
    """Runs the stages into `out_dir`. `tensorrt` defaults to the probed installed flavour; the engine is
    built for GPU `device` (or `options.target_sms`)."""
    deploy = load_deploy_config(model_dir)
    pdiparams.scan(deploy.params_file)
    plan = plan_input(deploy, options)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _convert(deploy, plan, out_dir, options, reporter, tensorrt, device)
    except BaseException:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed first stage leaves no empty folder behind
        raise


def _convert(deploy: DeployConfig, plan: InputPlan, out_dir: Path, options: ConvertOptions, reporter: Reporter,
             tensorrt: TensorRTFeatures | None, device: int) -> ConvertResult:
    report = ConvertReport(out_dir, options.force)
    report.document.update({"deploy_kit_version": __version__, "model_dir": str(deploy.model_dir.resolve()),
                            "input": asdict(plan), "options": _options_record(options),
                            "preprocessing": preprocessing_of(deploy, plan),
                            "deploy_yaml": {"output_op": deploy.output_op, "output_dtype": deploy.output_dtype,
                                            "input_shape": list(deploy.input_shape)}})
    model_sha, params_sha = sha256_file(deploy.model_file), sha256_file(deploy.params_file)
    stages = [_run_stage(report, "export", {"model": model_sha, "params": params_sha, "opset": options.opset,
                                            "plan": asdict(plan), "paddle2onnx": _tool_version("paddle2onnx")},
                         reporter, lambda: _export(deploy, plan, options, out_dir))]
    report.document["onnx_opset"] = stages[0].details["opset"]
    stages.append(_run_stage(report, "optimize", {"onnx": sha256_file(out_dir / ONNX_NAME),
                                                  "onnxslim": _tool_version("onnxslim"),
                                                  "onnx_version": _tool_version("onnx")},
                             reporter, lambda: _optimize(plan, out_dir)))
    if options.precision != "fp32":
        stages.append(_run_stage(report, "precision", _precision_key(options, out_dir), reporter,
                                 lambda: _reduce_precision(deploy, plan, options, out_dir)))
    features = tensorrt if tensorrt is not None or options.onnx_only else probe_tensorrt()
    if features is None or options.onnx_only:
        stages.append(_stop_before_build(options, out_dir, reporter))
        return ConvertResult(out_dir, plan, stages, None)
    graph = out_dir / engine_graph_name(options.precision, features)
    engine = out_dir / features.engine_name
    gpu = _gpu(device)
    spec = build_spec(graph, plan, options, gpu)
    stages.append(_run_stage(report, "build", {"graph": sha256_file(graph), "options": _options_record(options),
                                               "plan": asdict(plan), "flavor": features.flavor,
                                               "tensorrt": features.version, "gpu": _gpu_record(gpu)},
                             reporter, lambda: _build(spec, features, engine, report.document)))
    return ConvertResult(out_dir, plan, stages, engine)


def _stop_before_build(options: ConvertOptions, out_dir: Path, reporter: Reporter) -> StageResult:
    why = "--onnx-only" if options.onnx_only else "no TensorRT installed"
    stopped = StageResult("build", "stopped", details={"reason": why})
    reporter(stopped)
    if not options.onnx_only:
        raise TensorRTMissingError(
            "no TensorRT found, stopped after the ONNX stages", path=out_dir / OPT_NAME,
            note="neither `tensorrt` nor `tensorrt_rtx` imports",
            hint="pip install tensorrt (or tensorrt-rtx-cu13), or pass --onnx-only")
    return stopped


def engine_graph_name(precision: str, features: TensorRTFeatures) -> str:
    """INT8 always builds from the Q/DQ graph; FP16 from the FP16 graph where TensorRT is strongly typed."""
    if precision == "int8" or (precision == "fp16" and features.fp16_needs_fp16_graph):
        return graph_name(precision)
    return OPT_NAME


def build_spec(graph: Path, plan: InputPlan, options: ConvertOptions, gpu: GpuInfo | None) -> BuildSpec:
    """The engine build of `graph` for the input plan: a fixed-batch export pins the batch profile."""
    batch = options.batch
    batches = (plan.batch_fixed,) * 3 if plan.batch_fixed else (batch.min, batch.opt, batch.max)
    mins, opts, maxs = ((b, 3, *hw) for b, hw in zip(batches, plan.profile_hw()))
    return BuildSpec(graph, (mins, opts, maxs), options.precision, options.workspace, options.target_sms, gpu)


def _gpu(device: int) -> GpuInfo | None:
    gpus = detect_gpus()
    return gpus[device] if 0 <= device < len(gpus) else None


def _gpu_record(gpu: GpuInfo | None) -> str | None:
    return f"{gpu.name} {gpu.compute_capability}" if gpu else None


def _precision_key(options: ConvertOptions, out_dir: Path) -> dict[str, Any]:
    data = [_folder_key(options.calib_images, options.calib_count), _folder_key(options.eval_images),
            _folder_key(options.eval_labels)]
    return {"graph": sha256_file(out_dir / OPT_NAME), "data": data, "options": _options_record(options),
            "onnxruntime": _tool_version("onnxruntime")}


def _folder_key(folder: Path | None, limit: int | None = None) -> list[str] | None:
    if folder is None or not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file())[:limit]
    return [f"{p.name}:{sha256_file(p)}" for p in files]


def _options_record(options: ConvertOptions) -> dict[str, Any]:
    record = json.loads(json.dumps(asdict(options), default=str))  # paths as text
    record.pop("force")
    record.pop("onnx_only")
    return record


def _export(deploy: DeployConfig, plan: InputPlan, options: ConvertOptions,
            out_dir: Path) -> tuple[list[str], dict[str, Any]]:
    exported = export_onnx(deploy, plan, options, out_dir / ONNX_NAME)
    details: dict[str, Any] = {"opset": exported.opset, "source": deploy.model_file.name,
                               "program_rewrites": list(exported.rewrites)}
    if exported.note:
        details["note"] = exported.note
    return [ONNX_NAME], details


def check_shapes(plan: InputPlan) -> list[tuple[int, ...]]:
    """The inputs the optimized graph is proven equal on: the planned size, and for a dynamic-shape model
    a second size from its profile with another batch, so no dimension is checked at one value only. The
    second size's sides are odd: images run at their own size, so the graph must take any size."""
    batch = plan.batch_fixed or 2
    shapes: list[tuple[int, ...]] = [(batch, 3, plan.height, plan.width)]
    if plan.dynamic_hw:
        low, _, high = plan.profile_hw()
        second = tuple(min(hi, max(lo, opt // 2 | 1)) for lo, opt, hi in zip(low, (plan.height, plan.width), high))
        shapes.append((plan.batch_fixed or 1, 3, *second))
    return shapes


def _optimize(plan: InputPlan, out_dir: Path) -> tuple[list[str], dict[str, Any]]:
    # The optimizer and the precision stage import onnx (25 ms): only when they run, not on each warm
    # `infer` of a PaddleSeg export, whose stages are up to date.
    from .optimize import optimize_onnx

    return [OPT_NAME], optimize_onnx(out_dir / ONNX_NAME, out_dir / OPT_NAME, check_shapes(plan),
                                     static_outputs=not plan.dynamic_hw)


def _reduce_precision(deploy: DeployConfig, plan: InputPlan, options: ConvertOptions,
                      out_dir: Path) -> tuple[list[str], dict[str, Any]]:
    from .precision import (DEFAULT_MAX_MIOU_LOSS, accuracy_report, convert_to_fp16, load_accuracy_data,
                            quantize_to_int8, synthetic_accuracy_data, write_accuracy)  # see _optimize

    spec = PreprocessSpec.from_metadata(preprocessing_of(deploy, plan))
    calibration = load_accuracy_data(options.calib_images, None, options.calib_count, "calibration images")
    evaluation = load_accuracy_data(options.eval_images, options.eval_labels, None, "evaluation images")
    graph = graph_name(options.precision)
    if options.precision == "int8":
        details = quantize_to_int8(out_dir / OPT_NAME, out_dir / graph, calibration, spec, out_dir)
    else:
        details = convert_to_fp16(out_dir / OPT_NAME, out_dir / graph)
    limit = options.max_miou_loss if options.max_miou_loss is not None else DEFAULT_MAX_MIOU_LOSS[options.precision]
    data: AccuracyData = evaluation if evaluation.images else calibration if calibration.images \
        else synthetic_accuracy_data()
    accuracy = accuracy_report(out_dir / OPT_NAME, out_dir / graph, options.precision, data, spec, limit)
    details["accuracy"] = accuracy
    write_accuracy(out_dir / ACCURACY_NAME, accuracy, options.accept_accuracy_loss)
    return [graph, ACCURACY_NAME], details


def _build(spec: BuildSpec, features: TensorRTFeatures, engine: Path,
           report: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    description = build_engine(spec, features, engine)
    sidecar = write_engine_sidecar(engine, description, report)
    return [engine.name, sidecar.name], {"engine": engine.name, "flavor": features.flavor,
                                         "tensorrt_version": features.version,
                                         "targets": description["target_compute_capabilities"]}


def rebuild_engine(artifact: Artifact, features: TensorRTFeatures, gpu: GpuInfo | None,
                   target_sms: tuple[str, ...] | None = None, out_dir: Path | None = None) -> Path:
    """Rebuilds a convert output's engine from the ONNX beside it, with the options it was converted
    with, for `gpu` (or `target_sms`), into the cache (or `out_dir`); returns the engine."""
    recorded = artifact.options
    options = ConvertOptions(opset=recorded.get("opset"), precision=recorded["precision"],
                             batch=BatchRange(**recorded["batch"]), workspace=recorded["workspace"],
                             target_sms=target_sms)
    plan = InputPlan.from_record(artifact.input)
    graph = artifact.folder / engine_graph_name(options.precision, features)
    key = sha256_json([sha256_file(graph), features.flavor, features.version, _gpu_record(gpu),
                       _options_record(options)])
    engine = (out_dir or cache_root() / "engines" / key[:16]) / features.engine_name
    if out_dir is not None or not engine.is_file():
        description = build_engine(build_spec(graph, plan, options, gpu), features, engine)
        write_engine_sidecar(engine, description, artifact.report)
    return engine
