"""Stage 1: PaddleSeg inference model → ONNX through paddle2onnx, at a fixed opset.

paddle2onnx aborts the whole process (SIGABRT) on graphs it cannot convert, so the conversion runs in
a child Python process and its log is turned into a one-line error naming the Paddle model file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..paddleseg.deploy_config import ADAPTIVE_POOL_MULTIPLE, STRIDE_MULTIPLE, DeployConfig, resize_target_hw
from .options import ConvertOptions
from ..errors import ConfigError, ExportError
from ..fileio import atomic_output


@dataclass(frozen=True)
class InputPlan:
    """The H, W the model is exported and built at, where that came from, and the batch range."""

    height: int
    width: int
    source: str
    batch_fixed: int | None  # batch of a fixed-batch export, else None (dynamic)

    def describe(self) -> str:
        return f"input {self.height}x{self.width} (H x W) from {self.source}"


def plan_input(deploy: DeployConfig, options: ConvertOptions) -> InputPlan:
    """Decides the model's H and W: fixed in deploy.yaml, else a Resize transform, else --input-shape."""
    yaml_hw = (int(deploy.input_shape[2] or 0), int(deploy.input_shape[3] or 0)) if deploy.has_static_hw else None
    batch = deploy.input_shape[0] if isinstance(deploy.input_shape[0], int) else None
    if options.input_shape is not None:
        hw, source = (options.input_shape[2], options.input_shape[3]), "--input-shape"
        if yaml_hw is not None and tuple(hw) != yaml_hw:
            raise ConfigError(f"--input-shape asks for {hw[0]}x{hw[1]} but the model was exported at "
                              f"{yaml_hw[0]}x{yaml_hw[1]}", path=deploy.model_dir / "deploy.yaml",
                              hint="drop --input-shape, or re-export with PaddleSeg's tools/export.py --input_shape")
    elif yaml_hw is not None:
        hw, source = yaml_hw, "deploy.yaml input_shape"
    elif (resized := resize_target_hw(deploy.transforms)) is not None:
        hw, source = resized, "the Resize transform in deploy.yaml"
    else:
        raise ConfigError("deploy.yaml fixes no input size and has no fixed-size Resize",
                          path=deploy.model_dir / "deploy.yaml",
                          hint="pass --input-shape N,3,H,W (H and W multiples of 128 for PP-LiteSeg)")
    multiple = ADAPTIVE_POOL_MULTIPLE if deploy.uses_adaptive_pooling() else STRIDE_MULTIPLE
    if hw[0] % multiple or hw[1] % multiple:
        raise ConfigError(f"input {hw[0]}x{hw[1]} is not a multiple of {multiple}", path=deploy.model_file,
                          note="the model's adaptive pooling (SPPM bins 1, 2, 4) needs it" if multiple == 128 else None,
                          hint=f"use e.g. --input-shape 1,3,{_round_up(hw[0], multiple)},{_round_up(hw[1], multiple)}")
    return InputPlan(int(hw[0]), int(hw[1]), source, batch)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def export_onnx(deploy: DeployConfig, plan: InputPlan, options: ConvertOptions, out: Path) -> Path:
    """Runs paddle2onnx on the Paddle program and writes `out` atomically."""
    if not deploy.has_static_hw and deploy.uses_adaptive_pooling():
        # paddle2onnx refuses adaptive pooling on dynamic H/W and Paddle cannot re-shape a saved
        # program, so the fixed size has to come from PaddleSeg's own export.
        raise ExportError("the model has dynamic H/W and adaptive pooling, which paddle2onnx cannot convert",
                          path=deploy.model_file, note=f"wanted {plan.describe()}",
                          hint=f"re-export with PaddleSeg's tools/export.py --input_shape 1 3 {plan.height} {plan.width}")
    with atomic_output(out) as tmp:
        result = subprocess.run(
            [sys.executable, "-m", "deploy_kit.convert.export", str(deploy.model_file), str(deploy.params_file),
             str(tmp), str(options.opset)],
            capture_output=True, text=True, check=False)
        if result.returncode != 0 or not tmp.is_file():
            raise ExportError("paddle2onnx could not convert the model", path=deploy.model_file,
                              note=_paddle2onnx_cause(result.stderr + result.stdout),
                              hint=_export_hint(result.stderr + result.stdout, options.opset))
    return out


def _paddle2onnx_cause(log: str) -> str:
    errors = [m.group(1).strip() for m in re.finditer(r"\[ERROR\]\[Paddle2ONNX\](.*)", log)]
    if errors:
        return "; ".join(dict.fromkeys(errors))
    lines = [ln.strip() for ln in log.splitlines() if ln.strip() and "Warning" not in ln]
    return lines[-1] if lines else "no output"


def _export_hint(log: str, opset: int) -> str:
    if "opset" in log.lower():
        return f"try a higher --opset than {opset} (TensorRT parses up to 17 on 8.6)"
    if "No module named" in log:
        return "install the export tools: pip install 'deploy-kit[export]'"
    return "check the model exports and runs with Paddle Inference, then report the op named above"


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
