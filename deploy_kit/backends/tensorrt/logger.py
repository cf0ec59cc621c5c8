"""One TensorRT logger adapter for the builder and the runtime: forwards to `logging`, shows each warning
once, and keeps errors so failures can quote TensorRT's own words."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("deploy_kit.tensorrt")
# Warnings that say nothing about the user's model, shown only with --verbose. onnx-tensorrt warns about
# every zero-size initializer (a protobuf field's data() is never null), and opset-11 Resize requires
# its empty `roi` and `scales` inputs whenever `sizes` is given: every upsampling graph triggers it.
BENIGN_WARNINGS = ("was provided with non-empty data. Overriding data to nullptr",)


def make_logger(api: Any) -> Any:
    """A TensorRT logger that forwards to `logging`, drops repeated warnings and keeps errors for messages."""

    class DeduplicatingLogger(api.ILogger):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            api.ILogger.__init__(self)
            self.errors: list[str] = []
            self._seen: set[str] = set()

        def log(self, severity: Any, msg: str) -> None:
            if severity in (api.ILogger.Severity.ERROR, api.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif severity == api.ILogger.Severity.WARNING and any(known in msg for known in BENIGN_WARNINGS):
                log.debug("TensorRT: %s", msg)
            elif severity == api.ILogger.Severity.WARNING and msg not in self._seen:
                self._seen.add(msg)
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return DeduplicatingLogger()
