"""One error hierarchy: every user-facing failure says what failed, what was seen, and what to do.

Messages read `what failed · Note: observed values · Hint: the fix` and fit on one line, so the CLI can
print them without a traceback. Anything that is not a `DeployKitError` is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

# The CLI's exit codes (README, "Exit codes").
EXIT_OK = 0  # everything asked for was done
EXIT_SOME_FAILED = 1  # some inputs failed; each has its error line and the summary counts them
EXIT_USAGE = 2  # a bad option, model or stage: one line naming the file and the fix
EXIT_NO_TENSORRT = 3  # convert: no TensorRT installed (the ONNX stages still ran)
EXIT_BUG = 70  # an internal error (EX_SOFTWARE): the traceback is printed, please report it
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # the reader of our output went away (`| head`), as for SIGPIPE



class DeployKitError(Exception):
    """Base class; `exit_code` is what the CLI returns for it."""

    exit_code = EXIT_USAGE

    def __init__(self, what: str, *, path: Path | str | None = None, note: str | None = None,
                 hint: str | None = None) -> None:
        self.what, self.path, self.note, self.hint = what, path, note, hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [f"{self.path}: {self.what}" if self.path is not None else self.what]
        if self.note:
            parts.append(f"Note: {self.note}")
        if self.hint:
            parts.append(f"Hint: {self.hint}")
        return " · ".join(" ".join(p.split()) for p in parts)


class ConfigError(DeployKitError):
    """A model folder, deploy.yaml or option that cannot be used."""


class ExportError(DeployKitError):
    """paddle2onnx could not convert the Paddle model."""


class OptimizeError(DeployKitError):
    """The ONNX graph could not be made TensorRT-friendly without changing its outputs."""


class BuildError(DeployKitError):
    """TensorRT could not parse the ONNX graph or build an engine."""


class TensorRTMissingError(DeployKitError):
    """No TensorRT flavour is importable; the ONNX stages still ran."""

    exit_code = EXIT_NO_TENSORRT


class EngineCompatibilityError(DeployKitError):
    """An engine cannot run on this machine (other TensorRT, GPU or precision support)."""


class CudaError(DeployKitError):
    """A CUDA driver, runtime or NVRTC call failed; carries the CUDA error name."""


class InputImageError(DeployKitError):
    """An image that cannot be read or segmented."""


class SourceError(DeployKitError):
    """A video file, stream or camera that cannot be opened or read to its end."""
