"""deploy-kit: PaddleSeg inference models to fast, correct TensorRT deployments on NVIDIA GPUs.

    from deploy_kit import Segmenter
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__
__all__ = ["Segmenter", "__version__"]

if TYPE_CHECKING:
    from .segmenter import Segmenter


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import deploy_kit.errors` (and paddle2onnx's child process) stays light.
    if name == "Segmenter":
        from .segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'deploy_kit' has no attribute {name!r}")
