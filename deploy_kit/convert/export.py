"""Stage 1: PaddleSeg inference model → ONNX through paddle2onnx, at opset 11 unless the model needs more.

paddle2onnx aborts the whole process (SIGABRT) on graphs it cannot convert, so the conversion runs in
a child Python process, on a copy of the program with the known-quirk rewrites of `paddleseg.program`,
and its log is turned into a one-line error naming the Paddle model file.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ExportError
from ..fileio import atomic_output
from ..paddleseg.deploy_config import DeployConfig, resize_target_hw
from ..paddleseg.program import program_facts, rewrite_program
from .options import ConvertOptions, InputShape, shapes_of_images

# With dynamic H and W and no size given, the engine's profile covers these: a 1024x2048 Cityscapes frame
# and a 1080x1920 video frame both fit.
DEFAULT_DYNAMIC_HW = ((128, 512, 2048), (128, 512, 2048))
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_WANTS_OPSET = re.compile(r"opset_version to (\d+)")


@dataclass(frozen=True)
class InputPlan:
    """The H, W the model is exported and built at, where that came from, and the batch range.

    A dynamic-shape model (`dynamic_hw`) runs every image at its own size, as PaddleSeg's deploy
    pipeline does; `height`/`width` are then the profile's optimum and `hw_min`/`hw_max` its bounds.
    """

    height: int
    width: int
    source: str
    batch_fixed: int | None  # batch of a fixed-batch export, else None (dynamic)
    dynamic_hw: bool = False
    hw_min: tuple[int, int] | None = None
    hw_max: tuple[int, int] | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> InputPlan:
        """The plan as convert.json records it (JSON has lists where the plan has tuples); fields of older
        releases (`pad_multiple`) are left out."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k in known}
        return cls(**values)

    def describe(self) -> str:
        if self.dynamic_hw and self.hw_min and self.hw_max:
            return (f"input dynamic H x W from {tuple(self.hw_min)} to {tuple(self.hw_max)}, optimized for "
                    f"{self.height}x{self.width} ({self.source})")
        return f"input {self.height}x{self.width} (H x W) from {self.source}"

    def profile_hw(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """(min, opt, max) H, W of the engine's optimization profile."""
        opt = (self.height, self.width)
        return (tuple(self.hw_min or opt), opt, tuple(self.hw_max or opt))  # type: ignore[return-value]


def plan_input(deploy: DeployConfig, options: ConvertOptions) -> InputPlan:
    """Decides the model's H and W: fixed in deploy.yaml, else a Resize transform, else --input-shape; a
    dynamic-shape export without adaptive pooling stays dynamic."""
    batch = deploy.input_shape[0] if isinstance(deploy.input_shape[0], int) else None
    facts = program_facts(deploy.model_file)
    shape = options.input_shape
    if deploy.has_static_hw:
        yaml_hw = (int(deploy.input_shape[2] or 0), int(deploy.input_shape[3] or 0))
        if shape is not None and (not shape.fixed or shape.opt_hw != yaml_hw):
            raise ConfigError(f"--input-shape asks for {_shape_text(shape)} but the model was exported at "
                              f"{yaml_hw[0]}x{yaml_hw[1]}", path=deploy.model_dir / "deploy.yaml",
                              hint="drop --input-shape, or re-export with PaddleSeg's tools/export.py --input_shape")
        return InputPlan(*yaml_hw, "deploy.yaml input_shape", batch)  # the export runs at its own size
    resized = resize_target_hw(deploy.transforms)
    if options.shapes_from is not None and (resized is not None or facts.needs_static_hw):
        raise ConfigError("--shapes-from sets the profile of a dynamic-shape model; this one takes one size",
                          path=deploy.model_dir / "deploy.yaml", hint="drop --shapes-from")
    if not facts.needs_static_hw:
        return _dynamic_plan(shape, resized, batch, options.shapes_from)
    if shape is not None and shape.fixed:
        hw, source = shape.opt_hw, "--input-shape"
    elif resized is not None and shape is None:
        hw, source = resized, "the Resize transform in deploy.yaml"
    else:
        raise ConfigError("deploy.yaml fixes no input size and the model's adaptive pooling needs one",
                          path=deploy.model_dir / "deploy.yaml",
                          hint=f"pass --input-shape N,3,H,W (H and W multiples of {facts.hw_multiple})")
    multiple = facts.hw_multiple
    if hw[0] % multiple or hw[1] % multiple:
        raise ConfigError(f"input {hw[0]}x{hw[1]} is not a multiple of {multiple}", path=deploy.model_file,
                          note=f"the model's adaptive pooling to bins {', '.join(map(str, facts.adaptive_bins))} "
                               "of the stride-32 feature map needs it",
                          hint=f"use e.g. --input-shape 1,3,{_round_up(hw[0], multiple)},{_round_up(hw[1], multiple)}")
    return InputPlan(int(hw[0]), int(hw[1]), source, batch)


def _dynamic_plan(shape: InputShape | None, resized: tuple[int, int] | None, batch: int | None,
                  shapes_from: Path | None) -> InputPlan:
    if shape is None and resized is not None:  # every image is resized to one size: a static profile
        return InputPlan(*resized, "the Resize transform in deploy.yaml", batch)
    if shape is not None and resized is not None:
        if not shape.fixed:
            raise ConfigError("--input-shape gives H/W ranges, but deploy.yaml resizes every image to one size",
                              hint=f"drop --input-shape (the Resize gives {resized[0]}x{resized[1]})")
        return InputPlan(*shape.opt_hw, "--input-shape", batch)
    source = "--input-shape" if shape is not None else "the default profile; --shapes-from or --input-shape sets it"
    if shapes_from is not None:
        if shape is not None:
            raise ConfigError("--shapes-from and --input-shape both set the profile", hint="give one of them")
        shape, count = shapes_of_images(shapes_from)
        source = f"--shapes-from {shapes_from} ({count} images)"
    heights, widths = (shape.height, shape.width) if shape is not None else DEFAULT_DYNAMIC_HW
    return InputPlan(heights[1], widths[1], source, batch, dynamic_hw=True, hw_min=(heights[0], widths[0]),
                     hw_max=(heights[2], widths[2]))


def _shape_text(shape: InputShape) -> str:
    return "x".join(":".join(map(str, r)) if len(set(r)) > 1 else str(r[0]) for r in (shape.height, shape.width))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class Exported:
    opset: int
    rewrites: tuple[str, ...]
    note: str | None  # one line for the user when the opset was raised


def export_onnx(deploy: DeployConfig, plan: InputPlan, options: ConvertOptions, out: Path) -> Exported:
    """Runs paddle2onnx on the (rewritten) Paddle program and writes `out` atomically. Without --opset the
    opset is raised once to the one paddle2onnx asks for."""
    if not deploy.has_static_hw and program_facts(deploy.model_file).needs_static_hw:
        # paddle2onnx refuses adaptive pooling on dynamic H/W and Paddle cannot re-shape a saved
        # program, so the fixed size has to come from PaddleSeg's own export.
        raise ExportError("the model has dynamic H/W and adaptive pooling, which paddle2onnx cannot convert",
                          path=deploy.model_file, note=f"wanted {plan.describe()}",
                          hint=f"re-export with PaddleSeg's tools/export.py --input_shape 1 3 {plan.height} {plan.width}")
    with tempfile.TemporaryDirectory(prefix="deploy-kit-export-") as scratch, atomic_output(out) as tmp:
        program = Path(scratch) / deploy.model_file.name
        rewrites = tuple(rewrite_program(deploy.model_file, program))
        opset, note = options.export_opset, None
        log = _paddle2onnx(program, deploy, tmp, opset)
        wanted = _WANTS_OPSET.search(log or "")
        if log is not None and wanted and options.opset is None and int(wanted.group(1)) > opset:
            note = f"raised the ONNX opset from {opset} to {wanted.group(1)}: paddle2onnx needs it for this model"
            opset = int(wanted.group(1))
            log = _paddle2onnx(program, deploy, tmp, opset)
        if log is not None:
            raise ExportError("paddle2onnx could not convert the model", path=deploy.model_file,
                              note=paddle2onnx_cause(log), hint=_export_hint(log, opset, options.opset is None))
    return Exported(opset, rewrites, note)


def _paddle2onnx(program: Path, deploy: DeployConfig, out: Path, opset: int) -> str | None:
    """Runs paddle2onnx in a child process (it aborts the process on graphs it cannot convert); returns
    its log when it failed, None when it wrote `out`."""
    result = subprocess.run([sys.executable, "-m", "deploy_kit.convert.export", str(program), str(deploy.params_file),
                             str(out), str(opset)], capture_output=True, text=True, check=False)
    if result.returncode == 0 and out.is_file():
        return None
    return _ANSI.sub("", result.stderr + "\n" + result.stdout)


def paddle2onnx_cause(log: str) -> str:
    """The reason in a paddle2onnx log: its [ERROR] lines, else the last lines that say something."""
    errors = [m.group(1).strip(" .:") for m in re.finditer(r"\[ERROR\]\[Paddle2ONNX\](.*)", log)]
    errors = [e for e in errors if len(e) > 2]
    if errors:
        return "; ".join(dict.fromkeys(errors))
    lines = [ln.strip() for ln in log.splitlines() if len(ln.strip(" .:-=^~")) > 2 and "Warning" not in ln
             and not ln.strip().startswith(("File ", "Traceback", "warnings.warn"))]
    return " / ".join(dict.fromkeys(lines[-2:])) if lines else "no output"


def _export_hint(log: str, opset: int, negotiable: bool) -> str:
    if "opset" in log.lower():
        return f"try a higher --opset than {opset} (TensorRT parses up to 17 on 8.6)" if not negotiable else \
            f"paddle2onnx cannot export this model at opset {opset} or the one it asked for"
    if "No module named" in log:
        return "install the export tools: pip install 'deploy-kit[export]'"
    op = re.search(r"\b(pd_op\.\w+|Op(?:erator)?\s*[:=]?\s*\w+)", log)
    if op:
        return f"paddle2onnx lacks a converter for {op.group(1)}: check paddle2onnx's supported ops, or report it"
    return "check the model exports and runs with Paddle Inference (PaddleSeg's tools/export.py, then deploy/python)"


def _convert_in_this_process(model: str, params: str, out: str, opset: int) -> int:
    import onnx
    import paddle2onnx

    onnx_bytes = paddle2onnx.export(model, params, None, opset_version=opset, auto_upgrade_opset=False,
                                    enable_onnx_checker=True)
    exported = onnx.load_from_string(onnx_bytes)
    got = next(o.version for o in exported.opset_import if o.domain in ("", "ai.onnx"))
    if got != opset:
        print(f"[ERROR][Paddle2ONNX] exported opset {got}, asked for {opset}", file=sys.stderr)
        return 1
    Path(out).write_bytes(onnx_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(_convert_in_this_process(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
