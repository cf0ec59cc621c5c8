"""A PaddleSeg inference folder as `tools/export.py` writes it: `deploy.yaml` (the single source of truth
for preprocessing), the program and its parameters. Shapes are NCHW everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

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
