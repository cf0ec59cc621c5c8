"""The conversion orchestrator: export → optimize → build, each cached by the hash of its inputs.

A stage re-runs only when something it depends on changed (input file contents, an option, a tool
version) or its outputs are missing or altered; `convert.json` records every stage's key, outputs,
checksums and timings, and is rewritten atomically after each stage.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from . import __version__, pdiparams
from .compat import TensorRTFeatures, probe_tensorrt
from .config import ConvertOptions, DeployConfig, load_deploy_config, resize_target_hw
from .errors import TensorRTMissingError
from .fileio import sha256_file, sha256_json, write_json_atomic
from .stages.export import InputPlan, export_onnx, plan_input

ONNX_NAME, OPT_NAME, REPORT_NAME = "model.onnx", "model.opt.onnx", "convert.json"
FP16_NAME, INT8_NAME, ACCURACY_NAME = "model.fp16.onnx", "model.int8.onnx", "accuracy.json"


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


def _tool_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


class _Cache:
    """convert.json: what each stage was run with and what it wrote."""

    def __init__(self, path: Path, force: bool) -> None:
        self.path = path
        self.document: dict[str, Any] = {"stages": {}}
        if path.is_file() and not force:
            try:
                self.document = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                pass  # a damaged report just means every stage runs again

    def is_fresh(self, stage: str, key: str, out_dir: Path) -> bool:
        entry = self.document.get("stages", {}).get(stage)
        if not entry or entry.get("key") != key:
            return False
        return all((out_dir / name).is_file() and sha256_file(out_dir / name) == digest
                   for name, digest in entry.get("outputs", {}).items())

    def record(self, stage: str, key: str, out_dir: Path, result: StageResult) -> None:
        self.document.setdefault("stages", {})[stage] = {
            "key": key, "status": result.status, "seconds": round(result.seconds, 3),
            "outputs": {name: sha256_file(out_dir / name) for name in result.outputs}, "details": result.details,
        }
        write_json_atomic(self.path, self.document)

    def details(self, stage: str) -> dict[str, Any]:
        return dict(self.document["stages"][stage].get("details", {}))


def _run_stage(cache: _Cache, name: str, key_parts: dict[str, Any], out_dir: Path, report: Reporter,
               work: Callable[[], tuple[list[str], dict[str, Any]]]) -> StageResult:
    key = sha256_json({"stage": name, "deploy_kit": __version__, **key_parts})
    if cache.is_fresh(name, key, out_dir):
        entry = cache.document["stages"][name]
        result = StageResult(name, "up to date", 0.0, list(entry["outputs"]), cache.details(name))
    else:
        started = time.perf_counter()
        outputs, details = work()
        result = StageResult(name, "done", time.perf_counter() - started, outputs, details)
        cache.record(name, key, out_dir, result)
    report(result)
    return result


def preprocessing_of(deploy: DeployConfig, plan: InputPlan) -> dict[str, Any]:
    """The preprocessing the runtime must apply, from deploy.yaml; a fixed-shape model with no Resize gets
    one to its input size, so any image size works."""
    transforms = [dict(t) for t in deploy.transforms]
    added = resize_target_hw(deploy.transforms) is None
    if added:
        transforms.insert(0, {"type": "Resize", "target_size": [plan.width, plan.height], "added_by": "deploy-kit"})
    return {"to_rgb": True, "transforms": transforms, "resize_added": added,
            "model_input_hw": [plan.height, plan.width], "output_op": deploy.output_op}


def convert(model_dir: Path, out_dir: Path, options: ConvertOptions, report: Reporter,
            tensorrt: TensorRTFeatures | None = None) -> ConvertResult:
    """Runs the three stages into `out_dir`. `tensorrt` defaults to the probed installed flavour."""
    deploy = load_deploy_config(model_dir)
    pdiparams.scan(deploy.params_file)
    plan = plan_input(deploy, options)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = _Cache(out_dir / REPORT_NAME, options.force)
    cache.document.update({"deploy_kit_version": __version__, "model_dir": str(model_dir.resolve()),
                           "input": asdict(plan), "options": _options_record(options),
                           "preprocessing": preprocessing_of(deploy, plan)})
    model_sha, params_sha = sha256_file(deploy.model_file), sha256_file(deploy.params_file)
    stages = [_run_stage(cache, "export", {"model": model_sha, "params": params_sha, "opset": options.opset,
                                           "plan": asdict(plan), "paddle2onnx": _tool_version("paddle2onnx")},
                         out_dir, report, lambda: _export(deploy, plan, options, out_dir))]
    stages.append(_run_stage(cache, "optimize", {"onnx": sha256_file(out_dir / ONNX_NAME),
                                                 "onnxslim": _tool_version("onnxslim"),
                                                 "onnx_version": _tool_version("onnx")},
                             out_dir, report, lambda: _optimize(plan, out_dir)))
    if options.precision != "fp32":
        data_key = [_folder_key(options.calib_images, options.calib_count), _folder_key(options.eval_images),
                    _folder_key(options.eval_labels)]
        stages.append(_run_stage(cache, "precision", {"graph": sha256_file(out_dir / OPT_NAME), "data": data_key,
                                                      "options": _options_record(options),
                                                      "onnxruntime": _tool_version("onnxruntime")},
                                 out_dir, report, lambda: _reduce_precision(deploy, plan, options, out_dir)))
    features = tensorrt if tensorrt is not None else probe_tensorrt()
    if features is None or options.onnx_only:
        why = "--onnx-only" if options.onnx_only else "no TensorRT installed"
        stages.append(StageResult("build", "stopped", details={"reason": why}))
        report(stages[-1])
        if not options.onnx_only:
            raise TensorRTMissingError(
                "no TensorRT found, stopped after the ONNX stages", path=out_dir / OPT_NAME,
                note="neither `tensorrt` nor `tensorrt_rtx` imports",
                hint="pip install tensorrt (or tensorrt-rtx-cu13), or pass --onnx-only")
        return ConvertResult(out_dir, plan, stages, None)
    graph = _graph_for(options.precision, features)
    engine_name = features.engine_name
    stages.append(_run_stage(cache, "build", {"graph": sha256_file(out_dir / graph), "options": _options_record(options),
                                              "plan": asdict(plan), "flavor": features.flavor,
                                              "tensorrt": features.version, "gpus": _gpu_record()},
                             out_dir, report, lambda: _build(deploy, plan, options, features, out_dir / graph,
                                                             out_dir / engine_name)))
    return ConvertResult(out_dir, plan, stages, out_dir / engine_name)


def _graph_for(precision: str, features: TensorRTFeatures) -> str:
    """INT8 always builds from the Q/DQ graph; FP16 from the FP16 graph where TensorRT is strongly typed."""
    if precision == "int8":
        return INT8_NAME
    return FP16_NAME if precision == "fp16" and features.fp16_needs_fp16_graph else OPT_NAME


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


def _gpu_record() -> list[str]:
    from .gpu import detect_gpus

    return [f"{g.name} {g.compute_capability}" for g in detect_gpus()]


def _export(deploy: DeployConfig, plan: InputPlan, options: ConvertOptions,
            out_dir: Path) -> tuple[list[str], dict[str, Any]]:
    export_onnx(deploy, plan, options, out_dir / ONNX_NAME)
    return [ONNX_NAME], {"opset": options.opset, "source": deploy.model_file.name}


def _optimize(plan: InputPlan, out_dir: Path) -> tuple[list[str], dict[str, Any]]:
    from .stages.optimize import optimize_onnx

    return [OPT_NAME], optimize_onnx(out_dir / ONNX_NAME, out_dir / OPT_NAME, plan.batch_fixed or 2)


def _reduce_precision(deploy: DeployConfig, plan: InputPlan, options: ConvertOptions,
                      out_dir: Path) -> tuple[list[str], dict[str, Any]]:
    from .runtime.preprocess import PreprocessSpec
    from .stages.precision import (DEFAULT_MAX_MIOU_LOSS, accuracy_report, convert_to_fp16, load_accuracy_data,
                                   quantize_to_int8, write_accuracy)

    spec = PreprocessSpec.from_metadata(preprocessing_of(deploy, plan))
    calibration = load_accuracy_data(options.calib_images, None, options.calib_count, "calibration images")
    evaluation = load_accuracy_data(options.eval_images, options.eval_labels, None, "evaluation images")
    if options.precision == "int8":
        graph = INT8_NAME
        details = quantize_to_int8(out_dir / OPT_NAME, out_dir / graph, calibration, spec, out_dir)
    else:
        graph = FP16_NAME
        details = convert_to_fp16(out_dir / OPT_NAME, out_dir / graph)
    limit = options.max_miou_loss if options.max_miou_loss is not None else DEFAULT_MAX_MIOU_LOSS[options.precision]
    data = evaluation if evaluation.images else calibration if calibration.images else None
    if data is None:
        from .stages.precision import synthetic_accuracy_data

        data = synthetic_accuracy_data()
    accuracy = accuracy_report(out_dir / OPT_NAME, out_dir / graph, options.precision, data, spec, limit)
    details["accuracy"] = accuracy
    write_accuracy(out_dir / ACCURACY_NAME, accuracy, options.accept_accuracy_loss)
    return [graph, ACCURACY_NAME], details


def _build(deploy: DeployConfig, plan: InputPlan, options: ConvertOptions, features: TensorRTFeatures,
           graph: Path, engine: Path) -> tuple[list[str], dict[str, Any]]:
    from .stages.build import BuildRequest, build_engine

    description = build_engine(BuildRequest(graph, plan, options), features, engine)
    description["preprocessing"] = preprocessing_of(deploy, plan)
    description["deploy_yaml"] = {"output_op": deploy.output_op, "output_dtype": deploy.output_dtype,
                                  "input_shape": list(deploy.input_shape)}
    description["deploy_kit_version"] = __version__
    metadata_name = engine.name + ".json"
    write_json_atomic(engine.with_name(metadata_name), description)
    return [engine.name, metadata_name], {"engine": engine.name, "flavor": features.flavor,
                                          "tensorrt_version": features.version,
                                          "targets": description["target_compute_capabilities"]}


def rebuild_engine(folder: Path, features: TensorRTFeatures, target_sms: tuple[str, ...] | None = None,
                   out_dir: Path | None = None) -> Path:
    """Rebuilds a convert output's engine from the ONNX beside it, with the options it was converted
    with, for this GPU (or `target_sms`), into the cache (or `out_dir`); returns the engine."""
    from .config import BatchRange
    from .models import cache_root
    from .stages.build import BuildRequest, build_engine

    report = json.loads((folder / REPORT_NAME).read_text())
    recorded = report["options"]
    options = ConvertOptions(opset=recorded["opset"], precision=recorded["precision"],
                             batch=BatchRange(**recorded["batch"]), workspace=recorded["workspace"],
                             target_sms=target_sms)
    plan = InputPlan(**report["input"])
    graph = folder / _graph_for(options.precision, features)
    key = sha256_json([sha256_file(graph), features.flavor, features.version, _gpu_record(), _options_record(options)])
    engine = (out_dir or cache_root() / "engines" / key[:16]) / features.engine_name
    if out_dir is not None or not engine.is_file():
        description = build_engine(BuildRequest(graph, plan, options), features, engine)
        description["preprocessing"] = report["preprocessing"]
        write_json_atomic(engine.with_name(engine.name + ".json"), description)
    return engine
