"""The convert-output format: which files `convert` writes into its folder, `convert.json` (the stage
cache and the record of how the model was converted) and the engine sidecar `<engine>.json`.

This module is the one reader and the one writer of each; every other module asks it for names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .version import __version__
from .errors import ConfigError
from .fileio import sha256_file, write_json_atomic

PRECISIONS = ("fp32", "fp16", "int8")
ONNX_NAME, REPORT_NAME, ACCURACY_NAME = "model.onnx", "convert.json", "accuracy.json"
ENGINE_NAMES = {"tensorrt": "model.engine", "tensorrt_rtx": "model.rtx.engine"}  # per TensorRT flavour
_GRAPH_NAMES = {"fp32": "model.opt.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


def graph_name(precision: str) -> str:
    """The ONNX graph of one precision: the optimized FP32 graph, or its FP16 / INT8 Q/DQ variant."""
    return _GRAPH_NAMES[precision]


def sidecar_path(engine: Path) -> Path:
    """`model.engine` → `model.engine.json`: the metadata beside a plain plan file."""
    return engine.with_name(engine.name + ".json")


def write_engine_sidecar(engine: Path, description: dict[str, Any], report: dict[str, Any]) -> Path:
    """The engine's description from the builder plus what the runtime needs from `convert.json`."""
    sidecar = {**description, "preprocessing": report["preprocessing"], "deploy_yaml": report["deploy_yaml"],
               "onnx_opset": report.get("onnx_opset"), "deploy_kit_version": __version__}
    return write_json_atomic(sidecar_path(engine), sidecar)


@dataclass(frozen=True)
class EngineFile:
    path: Path
    meta: dict[str, Any]


@dataclass(frozen=True)
class Artifact:
    """A `convert` output folder, as the runtime and the backends see it."""

    folder: Path
    preprocessing: dict[str, Any]
    precision: str  # what convert was asked for
    input: dict[str, Any]  # the input plan (H, W, where they came from, fixed batch)
    options: dict[str, Any]
    report: dict[str, Any]

    @staticmethod
    def is_convert_output(folder: Path) -> bool:
        return (folder / REPORT_NAME).is_file()

    @classmethod
    def open(cls, folder: Path) -> Artifact:
        report = ConvertReport.read(folder)
        if "preprocessing" not in report or "input" not in report:
            raise ConfigError("convert output is incomplete", path=folder,
                              hint=f"run deploy-kit convert MODEL -o {folder} --force")
        options = report.get("options", {})
        return cls(folder, report["preprocessing"], options.get("precision", "fp32"), report["input"], options, report)

    @property
    def num_classes(self) -> int | None:
        """Score channels of the model, recorded by the optimize stage (None in older convert outputs)."""
        details = self.report.get("stages", {}).get("optimize", {}).get("details", {})
        return details.get("num_classes")

    @property
    def onnx(self) -> Path:
        """The FP32 graph every other graph and engine is made from."""
        return self.folder / graph_name("fp32")

    def graph(self, precision: str) -> Path:
        path = self.folder / graph_name(precision)
        if not path.is_file():
            raise ConfigError(f"no {precision} graph in this convert output", path=self.folder,
                              hint=f"deploy-kit convert MODEL -o {self.folder} --precision {precision}")
        return path

    def runtime_files(self) -> list[str]:
        """What the runtime reads to run this model anywhere: convert.json, the ONNX graphs it may run
        (never the raw export) and a full-TensorRT engine with its sidecar (a TensorRT-RTX plan is built
        for the machines `convert` targeted; elsewhere the ONNX Runtime graphs run)."""
        graphs = [graph_name(p) for p in PRECISIONS if (self.folder / graph_name(p)).is_file()]
        engine = self.engine(ENGINE_NAMES["tensorrt"])
        engines = [engine.path.name, sidecar_path(engine.path).name] if engine is not None else []
        return [REPORT_NAME, *graphs, *engines]

    def engines(self) -> list[EngineFile]:
        """Every engine here that has its sidecar, by name."""
        sidecars = sorted(self.folder.glob("*.engine.json"))
        return [found for found in (self.engine(s.name[:-len(".json")]) for s in sidecars) if found is not None]

    def engine(self, name: str) -> EngineFile | None:
        """The engine `name` and its sidecar, when both are here."""
        path = self.folder / name
        meta = sidecar_path(path)
        if path.is_file() and meta.is_file():
            return EngineFile(path, json.loads(meta.read_text()))
        return None


class ConvertReport:
    """`convert.json`: how the model was converted, and what each stage ran with and wrote (the cache)."""

    def __init__(self, folder: Path, force: bool) -> None:
        self.folder = folder
        self.document: dict[str, Any] = {"stages": {}}
        if not force:
            try:
                self.document = self.read(folder)
            except ConfigError:
                pass  # a missing or damaged report just means every stage runs again
        self.document.setdefault("stages", {})

    @staticmethod
    def read(folder: Path) -> dict[str, Any]:
        path = folder / REPORT_NAME
        try:
            document = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("cannot read the convert report", path=path, note=str(exc).splitlines()[0],
                              hint=f"run deploy-kit convert MODEL -o {folder} --force") from None
        if not isinstance(document, dict):
            raise ConfigError("the convert report is not a JSON object", path=path,
                              hint=f"run deploy-kit convert MODEL -o {folder} --force")
        return document

    def is_fresh(self, stage: str, key: str) -> bool:
        entry = self.document["stages"].get(stage)
        if not entry or entry.get("key") != key:
            return False
        return all((self.folder / name).is_file() and sha256_file(self.folder / name) == digest
                   for name, digest in entry.get("outputs", {}).items())

    def stage(self, stage: str) -> dict[str, Any]:
        return dict(self.document["stages"][stage])

    def record(self, stage: str, key: str, status: str, seconds: float, outputs: list[str],
               details: dict[str, Any]) -> None:
        self.document["stages"][stage] = {
            "key": key, "status": status, "seconds": round(seconds, 3),
            "outputs": {name: sha256_file(self.folder / name) for name in outputs}, "details": details,
        }
        self.save()

    def save(self) -> None:
        write_json_atomic(self.folder / REPORT_NAME, self.document)
