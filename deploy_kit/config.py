"""Configuration: the PaddleSeg model folder (`deploy.yaml` is the single source of truth for
preprocessing) and the options of `convert`, as frozen dataclasses. Shapes are NCHW everywhere."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8")
# PP-LiteSeg's SPPM pools to bins 1, 2 and 4 of the stride-32 feature map, so with adaptive pooling in
# the graph H and W must divide by 32 * 4; every PaddleSeg backbone needs at least its stride of 32.
ADAPTIVE_POOL_MULTIPLE, STRIDE_MULTIPLE = 128, 32


@dataclass(frozen=True)
class DeployConfig:
    """A PaddleSeg inference folder as `tools/export.py` writes it."""

    model_dir: Path
    model_file: Path  # model.json (Paddle 3, PIR) or model.pdmodel (Paddle 2), whichever exists
    params_file: Path
    transforms: tuple[dict[str, Any], ...]
    input_shape: tuple[int | None, ...]  # NCHW; None where the export left it dynamic
    output_op: str  # argmax | softmax | none
    output_dtype: str

    @property
    def has_static_hw(self) -> bool:
        return all(isinstance(d, int) and d > 0 for d in self.input_shape[2:])

    def uses_adaptive_pooling(self) -> bool:
        """True when the Paddle program holds adaptive pooling (then paddle2onnx needs a static H, W)."""
        return b"adaptive" in self.model_file.read_bytes()


@dataclass(frozen=True)
class BatchRange:
    """TensorRT optimization profile for the batch dimension."""

    min: int = 1
    opt: int = 1
    max: int = 8

    @classmethod
    def parse(cls, text: str) -> BatchRange:
        parts = text.split(":")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) == 1:
            values = values * 3
        if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
            raise ConfigError(f"bad --batch {text!r}", hint="give MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, e.g. 1:1:8")
        return cls(*values)


@dataclass(frozen=True)
class ConvertOptions:
    """Everything `convert` can be told; defaults live here and nowhere else.

    Attributes:
        opset: ONNX opset paddle2onnx exports at (TensorRT 8.6 parses 9-17).
        precision: engine precision; fp16 means an FP16 ONNX graph on strongly typed TensorRT.
        batch: optimization profile of the batch dimension (a fixed-batch export overrides it).
        input_shape: NCHW to export and build at, when `deploy.yaml` leaves H and W open.
        workspace: builder workspace limit in bytes; None means a safe share of free GPU memory.
        target_sms: compute capabilities to build for, e.g. ("8.7",); None means the builder's GPU.
        calib_images: folder of images to calibrate INT8 on (through the inference preprocessing).
        calib_count: at most this many calibration images (sorted by name).
        eval_images, eval_labels: images (and label PNGs) for the accuracy report; else the calibration
            images, else generated scenes, compared with the FP32 graph.
        max_miou_loss: mIoU points the reduced precision may lose (default 0.3 FP16, 1.5 INT8).
        accept_accuracy_loss: keep a graph above that limit (the report still says "fail").
        force: redo every stage even when its inputs did not change.
        onnx_only: stop after the ONNX stages (no TensorRT needed).
    """

    opset: int = 11
    precision: str = "fp32"
    batch: BatchRange = field(default_factory=BatchRange)
    input_shape: tuple[int, int, int, int] | None = None
    workspace: int | None = None
    target_sms: tuple[str, ...] | None = None
    calib_images: Path | None = None
    calib_count: int = 200
    eval_images: Path | None = None
    eval_labels: Path | None = None
    max_miou_loss: float | None = None
    accept_accuracy_loss: bool = False
    force: bool = False
    onnx_only: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
        if self.precision == "int8" and self.calib_images is None:
            raise ConfigError("INT8 needs calibration images", hint="pass --calib-images DIR (e.g. 200 typical images)")
        if not 7 <= self.opset <= 21:
            raise ConfigError(f"opset {self.opset} is out of range", hint="use --opset 11 (default) up to 17 for TensorRT")


def parse_input_shape(text: str) -> tuple[int, int, int, int]:
    try:
        dims = tuple(int(d) for d in re.split(r"[,x ]+", text.strip()))
    except ValueError:
        dims = ()
    if len(dims) != 4 or dims[1] != 3 or min(dims) < 1:
        raise ConfigError(f"bad --input-shape {text!r}", hint="give N,C,H,W with C=3, e.g. 1,3,512,1024")
    return dims  # type: ignore[return-value]


def parse_size(text: str) -> int:
    """'2GiB', '512MiB', '1.5G' or plain bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ConfigError(f"bad size {text!r}", hint="write it like 2GiB or 512MiB")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


def parse_target_sms(text: str) -> tuple[str, ...]:
    sms = tuple(s.strip() for s in text.split(",") if s.strip())
    if not sms or not all(re.fullmatch(r"\d+\.\d+", s) for s in sms):
        raise ConfigError(f"bad --target-sm {text!r}", hint="give compute capabilities like 8.7,8.6")
    return sms


def load_deploy_config(model_dir: Path) -> DeployConfig:
    """Reads and checks `model_dir/deploy.yaml` and finds the real model and parameter files."""
    if not model_dir.is_dir():
        raise ConfigError("model folder not found", path=model_dir,
                          hint="pass the folder PaddleSeg's tools/export.py wrote (deploy.yaml, model.json, model.pdiparams)")
    yaml_path = model_dir / "deploy.yaml"
    if not yaml_path.is_file():
        raise ConfigError("deploy.yaml is missing", path=yaml_path, hint="export the model with PaddleSeg's tools/export.py")
    try:
        document = yaml.safe_load(yaml_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError("deploy.yaml is not valid YAML", path=yaml_path, note=str(exc).splitlines()[0],
                          hint="restore the file written by PaddleSeg's tools/export.py") from None
    deploy = document.get("Deploy") if isinstance(document, dict) else None
    if not isinstance(deploy, dict):
        raise ConfigError("deploy.yaml has no 'Deploy' section", path=yaml_path,
                          hint="restore the file written by PaddleSeg's tools/export.py")
    transforms = deploy.get("transforms") or []
    if not isinstance(transforms, list) or not all(isinstance(t, dict) and "type" in t for t in transforms):
        raise ConfigError("Deploy.transforms must be a list of {type: ...} entries", path=yaml_path)
    output_op = str(deploy.get("output_op", "argmax")).lower()
    if output_op not in ("argmax", "softmax", "none"):
        raise ConfigError(f"unknown Deploy.output_op {output_op!r}", path=yaml_path, hint="use argmax, softmax or none")
    return DeployConfig(
        model_dir=model_dir,
        model_file=_find_model_file(model_dir, str(deploy.get("model", "model.pdmodel")), yaml_path),
        params_file=_find_params_file(model_dir, str(deploy.get("params", "model.pdiparams"))),
        transforms=tuple(transforms),
        input_shape=_parse_yaml_shape(deploy.get("input_shape"), yaml_path),
        output_op=output_op,
        output_dtype=str(deploy.get("output_dtype", "int32" if output_op == "argmax" else "float32")),
    )


def _find_model_file(model_dir: Path, named: str, yaml_path: Path) -> Path:
    # PaddleSeg's export names model.pdmodel in deploy.yaml even when Paddle 3 wrote model.json.
    stem = Path(named).stem
    for candidate in (model_dir / named, model_dir / f"{stem}.json", model_dir / f"{stem}.pdmodel"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"model file not found (deploy.yaml names {named!r})", path=model_dir,
                      note=f"looked for {stem}.json and {stem}.pdmodel",
                      hint=f"copy the exported {stem}.json or {stem}.pdmodel next to {yaml_path.name}")


def _find_params_file(model_dir: Path, named: str) -> Path:
    path = model_dir / named
    if not path.is_file():
        raise ConfigError("parameter file is missing", path=path, hint="copy the exported .pdiparams next to deploy.yaml")
    return path


def _parse_yaml_shape(value: Any, yaml_path: Path) -> tuple[int | None, ...]:
    if value is None:
        return (None, 3, None, None)
    if not isinstance(value, list) or len(value) != 4:
        raise ConfigError(f"Deploy.input_shape must be 4 numbers (NCHW), got {value!r}", path=yaml_path)
    return tuple(None if d is None or int(d) < 1 else int(d) for d in value)


def resize_target_hw(transforms: tuple[dict[str, Any], ...]) -> tuple[int, int] | None:
    """(H, W) a fixed-size `Resize` produces, or None if the transforms give no fixed size."""
    for t in transforms:
        if t["type"] == "Resize" and not t.get("keep_ratio", False):
            width, height = t.get("target_size", (512, 512))  # PaddleSeg's target_size is (w, h)
            return int(height), int(width)
    return None
