"""ONNX → serialized TensorRT engine, and the engine's description for its sidecar.

One path for `tensorrt` 8.6/10/11 and `tensorrt_rtx`: the differences are `TensorRTFeatures` probes.
Objects are annotated with the TensorRT 10 types so mypy checks every call against `tensorrt-stubs`;
calls that only TensorRT-RTX has go through `getattr` behind a probe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import BuildError
from ...fileio import atomic_output, sha256_file
from ...machine import GpuInfo
from .features import TensorRTFeatures
from .logger import make_logger

if TYPE_CHECKING:
    import tensorrt as trt

# Share of free GPU memory the builder may use by default; the rest stays for the CUDA context,
# the parser's copies of the weights and whatever else runs on an edge device's shared memory.
DEFAULT_WORKSPACE_FRACTION = 0.5
_OOM_MARKERS = ("out of memory", "outofmemory", "insufficient memory", "requested amount of gpu memory")


Shape = tuple[int, ...]


@dataclass(frozen=True)
class BuildSpec:
    """What to build and for which GPU.

    Attributes:
        onnx_path: the graph (FP32, FP16 or INT8 Q/DQ, as `precision` says).
        profile: the input's (min, opt, max) NCHW shapes of the optimization profile.
        precision: fp32, fp16 or int8; weakly typed TensorRT gets the matching builder flags.
        workspace: builder workspace limit in bytes; None means half the free memory of `gpu`.
        target_sms: compute capabilities to build for; None means `gpu` (or, for TensorRT-RTX without
            a GPU, every Ampere-or-newer capability it knows).
        gpu: the GPU the engine is for (the chosen --device), None where there is none.
    """

    onnx_path: Path
    profile: tuple[Shape, Shape, Shape]
    precision: str = "fp32"
    workspace: int | None = None
    target_sms: tuple[str, ...] | None = None
    gpu: GpuInfo | None = None


def build_engine(request: BuildSpec, features: TensorRTFeatures, engine_path: Path) -> dict[str, Any]:
    """Parses the ONNX, builds and writes the engine atomically; returns the engine's description."""
    api = features.module
    logger = make_logger(api)
    builder: trt.Builder = api.Builder(logger)
    network: trt.INetworkDefinition = builder.create_network(_network_flags(features))
    parser: trt.OnnxParser = api.OnnxParser(network, logger)
    if not parser.parse_from_file(str(request.onnx_path)):
        raise BuildError("TensorRT cannot parse the ONNX graph", path=request.onnx_path,
                         note=_parser_errors(parser), hint="check the node named here in Netron; try another --opset")
    config: trt.IBuilderConfig = builder.create_builder_config()
    profile = _add_profile(features, builder, config, network, request.profile)
    workspace = _workspace_bytes(request)
    if workspace is not None:
        _set_workspace(config, features, workspace)
    targets = _set_targets(config, features, request.target_sms, request.gpu)
    # Weakly typed TensorRT needs the flags to use reduced precision at all; INT8 keeps FP16 for the
    # layers the Q/DQ graph leaves unquantized.
    precision_flag = request.precision != "fp32" and features.precision_flags
    if precision_flag:
        config.set_flag(api.BuilderFlag.FP16)
        if request.precision == "int8":
            config.set_flag(api.BuilderFlag.INT8)
    if request.precision == "fp32" and hasattr(api.BuilderFlag, "TF32"):
        # FP32 means FP32, as Paddle computes it: TF32 changed 0.07% of a random-weight UNet's labels on
        # ONNX Runtime CUDA (H200); FP16 and INT8 are the precisions that trade accuracy, with their gate.
        config.clear_flag(api.BuilderFlag.TF32)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise _build_failure(logger.errors, request.onnx_path)
    with atomic_output(engine_path) as tmp:
        with tmp.open("wb") as handle:
            handle.write(memoryview(serialized))
    return {
        "flavor": features.flavor,
        "tensorrt_version": features.version,
        "engine_file": engine_path.name,
        "engine_sha256": sha256_file(engine_path),
        "onnx_file": request.onnx_path.name,
        "onnx_sha256": sha256_file(request.onnx_path),
        "builder_gpu": {"index": request.gpu.index, "name": request.gpu.name,
                        "compute_capability": request.gpu.compute_capability} if request.gpu else None,
        "target_compute_capabilities": list(targets),
        "precision": request.precision,
        "precision_source": "builder flag" if precision_flag else "onnx graph",
        "strongly_typed": features.strongly_typed_flag and not features.precision_flags,
        "workspace_bytes": workspace,
        "profile": profile,
        "inputs": [_tensor_info(network.get_input(i)) for i in range(network.num_inputs)],
        "outputs": [_tensor_info(network.get_output(i)) for i in range(network.num_outputs)],
        "build_seconds": round(time.perf_counter() - started, 2),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _network_flags(features: TensorRTFeatures) -> int:
    api = features.module
    flags = 0
    if features.explicit_batch_flag:
        flags |= 1 << int(api.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if features.strongly_typed_flag and not features.precision_flags:
        flags |= 1 << int(api.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def _parser_errors(parser: trt.OnnxParser) -> str:
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        errors.append(f"node {err.node_name() or err.node()} ({err.node_operator()}): {err.desc()}")
    return "; ".join(errors) or "no parser error recorded"


def _add_profile(features: TensorRTFeatures, builder: trt.Builder, config: trt.IBuilderConfig,
                 network: trt.INetworkDefinition, shapes: tuple[Shape, Shape, Shape]) -> dict[str, Any]:
    tensor = network.get_input(0)
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, *(features.module.Dims(list(shape)) for shape in shapes))
    config.add_optimization_profile(profile)
    return {"input": tensor.name, "min": list(shapes[0]), "opt": list(shapes[1]), "max": list(shapes[2])}


def _workspace_bytes(request: BuildSpec) -> int | None:
    if request.workspace is not None:
        return request.workspace
    return int(request.gpu.free_bytes * DEFAULT_WORKSPACE_FRACTION) if request.gpu else None


def _set_workspace(config: trt.IBuilderConfig, features: TensorRTFeatures, workspace: int) -> None:
    if features.memory_pool_limit:
        config.set_memory_pool_limit(features.module.MemoryPoolType.WORKSPACE, workspace)
    else:  # TensorRT before 8.4
        setattr(config, "max_workspace_size", workspace)


def _set_targets(config: trt.IBuilderConfig, features: TensorRTFeatures, target_sms: tuple[str, ...] | None,
                 gpu: GpuInfo | None) -> tuple[str, ...]:
    """Picks the compute capabilities the engine is for, and tells the builder."""
    here = gpu.compute_capability if gpu else None
    if features.buildable_sms:  # TensorRT-RTX: any listed SM, with or without that GPU
        wanted = target_sms or ((here,) if here else _runtime_sms(features))
        unknown = [sm for sm in wanted if sm not in features.buildable_sms]
        if unknown:
            raise BuildError(f"{features.flavor} {features.version} cannot build for compute capability "
                             f"{', '.join(unknown)}", note=f"it builds for {', '.join(features.buildable_sms)}",
                             hint="pick --target-sm from that list, or build with full TensorRT on the target device")
        api = features.module
        setattr(config, "num_compute_capabilities", len(wanted))
        for index, sm in enumerate(wanted):
            getattr(config, "set_compute_capability")(getattr(api.ComputeCapability, "SM" + sm.replace(".", "")), index)
        return tuple(wanted)
    if here is None:
        raise BuildError(f"{features.flavor} {features.version} needs a GPU to build an engine",
                         note="no CUDA device found", hint="build on the target device, or install tensorrt-rtx-cu13")
    if not target_sms or target_sms == (here,):
        return (here,)
    if features.hardware_compatibility and all(float(sm) >= 8.0 for sm in target_sms + (here,)):
        config.hardware_compatibility_level = features.module.HardwareCompatibilityLevel.AMPERE_PLUS
        return target_sms
    raise BuildError(f"TensorRT {features.version} builds only for this GPU (SM {here})",
                     note=f"asked for {', '.join(target_sms)}",
                     hint="run convert on the target device (e.g. the Jetson), or target only Ampere-or-newer GPUs")


def _runtime_sms(features: TensorRTFeatures) -> tuple[str, ...]:
    # With no GPU to build for, target every Ampere-or-newer capability the flavour can run on.
    return tuple(sm for sm in features.buildable_sms if float(sm) >= 8.0)


def _tensor_info(tensor: trt.ITensor) -> dict[str, Any]:
    shape = tensor.shape
    return {"name": tensor.name, "shape": [shape[i] for i in range(len(shape))], "dtype": str(tensor.dtype).split(".")[-1].lower()}


def _build_failure(errors: list[str], onnx_path: Path) -> BuildError:
    text = " ".join(errors)
    if any(marker in text.lower() for marker in _OOM_MARKERS):
        return BuildError("TensorRT ran out of memory building the engine", path=onnx_path, note=errors[-1],
                          hint="lower --workspace (e.g. --workspace 1GiB) or the --batch maximum")
    return BuildError("TensorRT could not build the engine", path=onnx_path,
                      note=errors[-1] if errors else "no error logged", hint="rerun with --verbose for TensorRT's log")
