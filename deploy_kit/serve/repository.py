"""`deploy-kit export-triton`: a standard Triton model repository for the NGC Triton container.

    <name>/              python backend: deploy-kit's whole runtime (TensorRT, ONNX Runtime CUDA or CPU)
    <name>_preprocess/   python backend: image bytes -> the engine's input, and the original H, W
    <name>_postprocess/  python backend: the engine's scores + H, W -> uint8 labels at the image's size
                         (both run deploy-kit's GPU kernels on GPU instances, the CPU arithmetic with --cpu;
                         on the GPU, JPEGs are decoded by its hardware JPEG decoder, the engine's input
                         leaves as a device tensor by DLPack and its scores are read on the device)
    <name>_trt/          tensorrt_plan: the engine `convert` built with full TensorRT, per compute capability
    <name>_ensemble/     ensemble: preprocess -> tensorrt_plan -> postprocess

The last two exist only when the convert output has a full-TensorRT engine: TensorRT-RTX plans do not
load in Triton's TensorRT backend. Every config.pbtxt is parsed into tritonclient's ModelConfig before
it is written. Each model gets only the files it reads: `<name>` the graphs and full-TensorRT engine the
runtime runs, `<name>_preprocess` the preprocessing record (convert.json), `<name>_postprocess` nothing.

The repository carries deploy-kit itself, as a source tree pip installs (`<name>/1/deploy-kit/`), so
the container needs nothing from outside but PyPI: `install_command` says how.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import onnx

from ..artifact import ENGINE_NAMES, REPORT_NAME, Artifact, EngineFile, graph_name
from ..backends.onnxruntime.cpu import onnx_tensor_spec
from ..errors import ConfigError
from ..fileio import write_bytes_atomic
from ..images import DEFAULT_MAX_PIXELS
from ..version import __version__
from .requests import IMAGE, IMAGE_BYTES, LABELS

_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
                 "uint8": "TYPE_UINT8", "float": "TYPE_FP32", "half": "TYPE_FP16"}
MODEL_FOLDER = "deploy-kit-model"
PACKAGE_FOLDER = "deploy-kit"


@dataclass(frozen=True)
class RepositoryOptions:
    name: str = "seg"
    max_batch: int = 8
    instances: int = 1
    max_queue_delay_us: int = 2000
    cpu: bool = False  # instances on the CPU (ONNX Runtime CPU) instead of the GPUs
    max_pixels: int = DEFAULT_MAX_PIXELS
    backend: str = "auto"  # what the runtime model's GPU instances run (see Segmenter)
    decoder: str = "auto"  # their JPEG decoder
    gpus: tuple[int, ...] = ()  # `instances` on each of these GPUs; () is Triton's default, every GPU


def export_repository(artifact: Artifact, out: Path, options: RepositoryOptions) -> list[str]:
    """Writes the repository into `out`; returns the model names written."""
    engine = artifact.engine(ENGINE_NAMES["tensorrt"])  # full TensorRT's; see the module docstring
    models = {options.name: (_runtime_config(options), "segment.py"),
              f"{options.name}_preprocess": (_preprocess_config(artifact, engine, options), "preprocess.py"),
              f"{options.name}_postprocess": (_postprocess_config(artifact, engine, options), "postprocess.py")}
    configs = {name: config for name, (config, _) in models.items()}
    if engine is not None:
        configs[f"{options.name}_trt"] = tensorrt_plan_config(engine.meta, f"{options.name}_trt", options)
        configs[f"{options.name}_ensemble"] = ensemble_config(engine.meta, options)
    for name, config in configs.items():
        validate_config(config, name)
    for name, config in configs.items():
        folder = out / name
        write_bytes_atomic(folder / "config.pbtxt", config.encode())
        if name in models:
            source = resources.files("deploy_kit.serve.triton_models").joinpath(models[name][1]).read_text()
            write_bytes_atomic(folder / "1" / "model.py", source.encode())
    _copy_files(artifact.folder, out / options.name / "1" / MODEL_FOLDER, artifact.runtime_files())
    _copy_files(artifact.folder, out / f"{options.name}_preprocess" / "1" / MODEL_FOLDER, [REPORT_NAME])
    write_package_source(out / options.name / "1" / PACKAGE_FOLDER)
    if engine is not None:
        _copy_plans(engine, out / f"{options.name}_trt" / "1")
    return list(configs)


def _copy_files(source: Path, target: Path, names: list[str]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(source / name, target / name)


def write_package_source(target: Path) -> None:
    """deploy-kit's package as a source tree with a pyproject.toml of its version and runtime dependencies
    (extras `cpu` and `cuda`), so `pip install` installs it in the Triton container from the repository."""
    package = Path(__file__).resolve().parents[1]
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(package, target / package.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    base, cpu, cuda = _requirements()
    (target / "pyproject.toml").write_text(f"""[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "deploy-kit"
version = "{__version__}"
requires-python = ">=3.10"
dependencies = {json.dumps(base)}

[project.optional-dependencies]
cpu = {json.dumps(cpu)}
cuda = {json.dumps(cuda)}

[tool.setuptools.packages.find]
include = ["deploy_kit*"]

[tool.setuptools.package-data]
deploy_kit = ["runtime/kernels/*.cu", "runtime/kernels/*.cuh", "backends/tensorrt/*.json"]
""")


def _requirements() -> tuple[list[str], list[str], list[str]]:
    """The installed deploy-kit's runtime requirements for a server: OpenCV without GUI libraries (the
    container has no libGL; paddleseg, which needs the full one, is not installed there), and ONNX
    Runtime as an extra, `cpu` or `cuda` (its GPU build and the `cuda` extra), since the two clash."""
    try:
        declared = metadata.requires("deploy-kit") or []
    except metadata.PackageNotFoundError:
        raise ConfigError("deploy-kit is not installed, so its requirements are unknown",
                          hint="pip install -e . in the deploy-kit checkout") from None
    base = [r.replace("opencv-python", "opencv-python-headless") for r in declared if "extra ==" not in r]
    runtime = [r for r in base if r.startswith("onnxruntime")]
    cuda = [r.replace(' and extra == "cuda"', "").replace('; extra == "cuda"', "")
            for r in declared if 'extra == "cuda"' in r]
    return ([r for r in base if r not in runtime], runtime,
            cuda + [r.replace("onnxruntime", "onnxruntime-gpu") for r in runtime])


def install_command(options: RepositoryOptions) -> str:
    """The shell command that installs deploy-kit from a repository mounted at /models and starts Triton."""
    extra = "cpu" if options.cpu else "cuda"
    return f'pip install "/models/{options.name}/1/{PACKAGE_FOLDER}[{extra}]" && tritonserver --model-repository=/models'


def _copy_plans(engine: EngineFile, version: Path) -> None:
    version.mkdir(parents=True, exist_ok=True)
    shutil.copy2(engine.path, version / "model.plan")


def _instance_group(options: RepositoryOptions) -> str:
    gpus = f" gpus: [ {', '.join(map(str, options.gpus))} ]" if options.gpus and not options.cpu else ""
    return f'instance_group [ {{ count: {options.instances} kind: {"KIND_CPU" if options.cpu else "KIND_GPU"}{gpus} }} ]'


def _batching(options: RepositoryOptions) -> str:
    return (f"max_batch_size: {options.max_batch}\n"
            f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}")


# The python backend copies a GPU model's outputs (the engine's scores) to the host before a python model
# sees them unless told otherwise: a GPU instance reads them where they are, by DLPack.
_DEVICE_INPUTS = {"FORCE_CPU_ONLY_INPUT_TENSORS": "no"}


def _parameters(**values: str) -> str:
    return "\n".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}' for k, v in values.items())


def _dims(shape: Any) -> str:
    return "[ " + ", ".join(str(int(d)) for d in shape) + " ]"


def _runtime_config(options: RepositoryOptions) -> str:
    return f'''name: "{options.name}"
backend: "python"
{_batching(options)}
input [
  {{ name: "{IMAGE_BYTES}" data_type: TYPE_STRING dims: [ 1 ] optional: true }},
  {{ name: "{IMAGE}" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] optional: true }}
]
output [ {{ name: "{LABELS}" data_type: TYPE_UINT8 dims: [ -1, -1 ] }} ]
{_instance_group(options)}
{_parameters(backend="onnxruntime-cpu" if options.cpu else options.backend, decoder=options.decoder,
             max_pixels=str(options.max_pixels))}
model_warmup [ {{ name: "grey 64x64" batch_size: 1
  inputs {{ key: "{IMAGE}" value {{ data_type: TYPE_UINT8 dims: [ 64, 64, 3 ] zero_data: true }} }} }} ]
'''


def _engine_input(artifact: Artifact, engine: EngineFile | None) -> tuple[str, list[int]]:
    if engine is not None:
        tensor = engine.meta["inputs"][0]
        return _TRITON_TYPES[tensor["dtype"]], tensor["shape"][1:]
    spec = onnx_tensor_spec(onnx.load(str(artifact.graph("fp32")), load_external_data=False).graph.input[0])
    return _TRITON_TYPES[spec.dtype.name], list(spec.shape[1:])


def _engine_output(artifact: Artifact, engine: EngineFile | None) -> tuple[str, str, list[int]]:
    if engine is not None:
        tensor = engine.meta["outputs"][0]
        return tensor["name"], _TRITON_TYPES[tensor["dtype"]], tensor["shape"][1:]
    spec = onnx_tensor_spec(onnx.load(str(artifact.folder / graph_name("fp32")), load_external_data=False).graph.output[0])
    return spec.name, _TRITON_TYPES[spec.dtype.name], list(spec.shape[1:])


def _preprocess_config(artifact: Artifact, engine: EngineFile | None, options: RepositoryOptions) -> str:
    dtype, shape = _engine_input(artifact, engine)
    if -1 in shape:
        raise ConfigError("the model takes a dynamic input size; the ensemble's preprocessing needs a fixed one",
                          path=artifact.folder, hint="serve it with the single deploy-kit model, or convert at a fixed size")
    numpy_dtype = "float16" if dtype == "TYPE_FP16" else "float32"
    return f'''name: "{options.name}_preprocess"
backend: "python"
{_batching(options)}
input [ {{ name: "{IMAGE_BYTES}" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [
  {{ name: "input" data_type: {dtype} dims: {_dims(shape)} }},
  {{ name: "original_hw" data_type: TYPE_INT32 dims: [ 2 ] }}
]
{_instance_group(options)}
{_parameters(input_dtype=numpy_dtype, max_pixels=str(options.max_pixels))}
'''


def _postprocess_config(artifact: Artifact, engine: EngineFile | None, options: RepositoryOptions) -> str:
    _, dtype, shape = _engine_output(artifact, engine)
    return f'''name: "{options.name}_postprocess"
backend: "python"
{_batching(options)}
input [
  {{ name: "scores" data_type: {dtype} dims: {_dims(shape)} }},
  {{ name: "original_hw" data_type: TYPE_INT32 dims: [ 2 ] }}
]
output [ {{ name: "{LABELS}" data_type: TYPE_UINT8 dims: [ -1, -1 ] }} ]
{_instance_group(options)}
{_parameters(**_DEVICE_INPUTS) if not options.cpu else ""}
'''


def tensorrt_plan_config(meta: dict[str, Any], name: str, options: RepositoryOptions) -> str:
    """The tensorrt_plan model of an engine sidecar: one plan for every compute capability it was built for."""
    tensor_in, tensor_out = meta["inputs"][0], meta["outputs"][0]
    max_batch = min(options.max_batch, int(meta["profile"]["max"][0]))
    plans = "\n".join(f'cc_model_filenames {{ key: "{sm}" value: "model.plan" }}'
                      for sm in meta["target_compute_capabilities"])
    return f'''name: "{name}"
platform: "tensorrt_plan"
max_batch_size: {max_batch}
dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}
input [ {{ name: "{tensor_in['name']}" data_type: {_TRITON_TYPES[tensor_in['dtype']]} dims: {_dims(tensor_in['shape'][1:])} }} ]
output [ {{ name: "{tensor_out['name']}" data_type: {_TRITON_TYPES[tensor_out['dtype']]} dims: {_dims(tensor_out['shape'][1:])} }} ]
{plans}
instance_group [ {{ count: {options.instances} kind: KIND_GPU }} ]
model_warmup [ {{ name: "zeros" batch_size: 1
  inputs {{ key: "{tensor_in['name']}" value {{ data_type: {_TRITON_TYPES[tensor_in['dtype']]} dims: {_dims(tensor_in['shape'][1:])} zero_data: true }} }} }} ]
'''


def ensemble_config(meta: dict[str, Any], options: RepositoryOptions) -> str:
    name, tensor_in, tensor_out = options.name, meta["inputs"][0]["name"], meta["outputs"][0]["name"]
    return f'''name: "{name}_ensemble"
platform: "ensemble"
max_batch_size: {options.max_batch}
input [ {{ name: "{IMAGE_BYTES}" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [ {{ name: "{LABELS}" data_type: TYPE_UINT8 dims: [ -1, -1 ] }} ]
ensemble_scheduling {{ step [
  {{ model_name: "{name}_preprocess" model_version: -1
    input_map {{ key: "{IMAGE_BYTES}" value: "{IMAGE_BYTES}" }}
    output_map {{ key: "input" value: "preprocessed" }} output_map {{ key: "original_hw" value: "original_hw" }} }},
  {{ model_name: "{name}_trt" model_version: -1
    input_map {{ key: "{tensor_in}" value: "preprocessed" }} output_map {{ key: "{tensor_out}" value: "scores" }} }},
  {{ model_name: "{name}_postprocess" model_version: -1
    input_map {{ key: "scores" value: "scores" }} input_map {{ key: "original_hw" value: "original_hw" }}
    output_map {{ key: "{LABELS}" value: "{LABELS}" }} }}
] }}
'''


def validate_config(text: str, name: str) -> Any:
    """Parses a config.pbtxt into Triton's ModelConfig (tritonclient's protobuf); ConfigError if it fails."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise ConfigError("validating Triton configs needs tritonclient", hint="pip install 'deploy-kit[serve]'") from None
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"the generated config of {name} does not parse", note=str(exc)) from None
