"""TensorRT backends: full TensorRT and TensorRT-RTX, one registry entry per flavour over one code path
(feature probes, builder, executor, logger, support table)."""

from __future__ import annotations

from ...artifact import Artifact
from ...errors import ConfigError
from ...machine import GpuInfo
from ...cuda import Stream
from ..base import DeviceBackend, OpenRequest, Verdict, gpu_at
from .executor import TensorRTExecutor
from .features import TensorRTFeatures, flavor_installed, probe_flavor
from .support import engine_problems


class TensorRTBackend(DeviceBackend):
    """Runs the engine `convert` built with this flavour; an engine built for another GPU or TensorRT
    release is reported as rebuildable when the installed flavour supports this GPU."""

    def __init__(self, name: str, flavor: str, label: str) -> None:
        self.name, self.flavor, self.label = name, flavor, label

    @property
    def features(self) -> TensorRTFeatures | None:
        return probe_flavor(self.flavor)

    def check(self, artifact: Artifact, gpus: tuple[GpuInfo, ...], device: int) -> Verdict:
        gpu = gpu_at(gpus, device)
        if gpu is None:  # not imported: nothing of it can run, and its import is a tenth of `infer`'s start-up
            installed = flavor_installed(self.flavor)
            return Verdict(False, f"{self.label} is installed, but there is no CUDA GPU" if installed
                           else f"no {self.label} installed")
        features = self.features
        if features is None:
            return Verdict(False, f"no {self.label} installed")
        engine = artifact.engine(features.engine_name)
        if engine is None:
            return Verdict(False, f"no {self.label} engine in the model folder")
        problems, hopeless = engine_problems(engine.meta, features.flavor, features.version, gpu)
        if not problems:
            return Verdict(True, f"engine {engine.path.name} runs on {gpu.name}", engine=engine.path)
        if hopeless or not artifact.onnx.is_file():
            return Verdict(False, "; ".join(problems))
        return Verdict(True, f"engine rebuilt for {gpu.name} ({'; '.join(problems)})", rebuild=True)

    def open(self, artifact: Artifact, request: OpenRequest, stream: Stream) -> TensorRTExecutor:
        features = self.features
        found = artifact.engine(features.engine_name) if features else None
        path = request.engine or (found.path if found else None)
        if features is None or path is None:
            raise ConfigError(f"no {self.label} engine to open", path=artifact.folder,
                              hint=f"deploy-kit convert MODEL -o {artifact.folder}")
        return TensorRTExecutor(path, features)

    def hint(self) -> str:
        return "use --backend auto, or rebuild the engine on this machine: deploy-kit convert MODEL -o DIR --force"
