"""`deploy-kit export-triton`: every config parses into Triton's ModelConfig (the tensorrt_plan one from a
real TensorRT-RTX engine's sidecar too), and the tritonserver PyTriton ships loads the exported
python-backend models and answers with the labels `infer` writes."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading

import numpy as np
from PIL import Image

from deploy_kit.artifact import Artifact
from deploy_kit.cli import main
from deploy_kit.paddleseg.preprocess import PreprocessSpec, preprocess_cpu
from deploy_kit.serve.repository import RepositoryOptions, ensemble_config, tensorrt_plan_config, validate_config

from . import tritonserver
from .conftest import PHOTOS, require


def test_configs_parse_into_tritons_model_config(onnx_model, tmp_path):
    require("tritonclient")
    from tritonclient.grpc import model_config_pb2

    assert main(["export-triton", "--model", str(onnx_model), "-o", str(tmp_path / "repo"), "--max-batch", "4",
                 "--instances", "2"]) == 0
    parsed = {folder.name: validate_config((folder / "config.pbtxt").read_text(), folder.name)
              for folder in (tmp_path / "repo").iterdir()}
    assert sorted(parsed) == ["seg", "seg_postprocess", "seg_preprocess"]
    assert parsed["seg"].backend == "python" and parsed["seg"].max_batch_size == 4
    assert parsed["seg"].instance_group[0].count == 2 and parsed["seg"].model_warmup[0].batch_size == 1
    assert list(parsed["seg_preprocess"].output[0].dims) == [3, 256, 512]
    assert list(parsed["seg_postprocess"].input[0].dims) == [5, 256, 512]
    kinds = {name: [group.kind for group in config.instance_group] for name, config in parsed.items()}
    assert kinds == {name: [model_config_pb2.ModelInstanceGroup.KIND_GPU] for name in parsed}


def test_serve_places_the_repositorys_instances_on_the_listed_gpus(onnx_model, tmp_path):
    """`serve --server tritonserver --device 0,1 --instances 2`: two instances on each GPU, with the backend and
    JPEG decoder asked for; on the CPU, neither a GPU list nor a GPU backend."""
    require("tritonclient")
    from deploy_kit.artifact import Artifact
    from deploy_kit.serve.pytriton_server import ServeOptions
    from deploy_kit.serve.repository import export_repository
    from deploy_kit.serve.tritonserver import repository_options

    def seg_config(options: ServeOptions, on_gpu: bool):  # type: ignore[no-untyped-def]
        out = tmp_path / f"repo-{on_gpu}"
        export_repository(Artifact.open(onnx_model), out, repository_options(options, on_gpu))
        return validate_config((out / "seg" / "config.pbtxt").read_text(), "seg")

    on_gpus = seg_config(ServeOptions(onnx_model, devices=(0, 1), instances=2, decoder="cpu",
                                      backend="onnxruntime-cuda"), on_gpu=True)
    assert [(g.count, list(g.gpus)) for g in on_gpus.instance_group] == [(2, [0, 1])]
    assert on_gpus.parameters["backend"].string_value == "onnxruntime-cuda"
    assert on_gpus.parameters["decoder"].string_value == "cpu"
    on_cpu = seg_config(ServeOptions(onnx_model), on_gpu=False)
    assert list(on_cpu.instance_group[0].gpus) == [] and on_cpu.parameters["backend"].string_value == "onnxruntime-cpu"


def test_repository_holds_what_each_model_reads_once_and_installs_deploy_kit(onnx_model, tmp_path, capsys):
    """No raw export, no TensorRT-RTX plan, the graph once; deploy-kit itself installs from the repository
    with the command `export-triton` prints (its pip step, run here into a folder of its own)."""
    require("tritonclient")
    repo = tmp_path / "repo"
    assert main(["export-triton", "--model", str(onnx_model), "-o", str(repo), "--cpu"]) == 0
    printed = capsys.readouterr().out
    files = [p for p in repo.rglob("*") if p.is_file()]
    graphs = [p for p in files if p.suffix == ".onnx"]
    assert [p.name for p in graphs] == ["model.opt.onnx"] and not [p for p in files if ".engine" in p.name]
    assert sum(p.stat().st_size for p in files) < graphs[0].stat().st_size + (2 << 20)
    assert "--gpus" not in printed and 'pip install "/models/seg/1/deploy-kit[cpu]"' in printed
    assert main(["export-triton", "--model", str(onnx_model), "-o", str(tmp_path / "gpu-repo")]) == 0
    assert "--gpus all" in capsys.readouterr().out

    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                          str(repo / "seg" / "1" / "deploy-kit")], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    probe = ("import deploy_kit, deploy_kit.serve.requests; from importlib import resources; "
             "print(deploy_kit.__file__); print(resources.files('deploy_kit.runtime').joinpath('kernels', "
             "'slide.cu').is_file())")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == [str(target / "deploy_kit" / "__init__.py"), "True"]


def test_tensorrt_plan_config_of_a_real_engine(paddle_model, tmp_path):
    require("tritonclient", "tensorrt_rtx")
    assert main(["convert", str(paddle_model("none")), "-o", str(tmp_path / "build")]) == 0
    meta = json.loads((tmp_path / "build" / "model.rtx.engine.json").read_text())
    config = validate_config(tensorrt_plan_config(meta, "seg_trt", RepositoryOptions(max_batch=16)), "seg_trt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 8  # the profile's max batch
    assert dict(config.cc_model_filenames) == {sm: "model.plan" for sm in meta["target_compute_capabilities"]}
    assert config.input[0].name == meta["inputs"][0]["name"] and list(config.input[0].dims) == [3, 256, 512]
    assert config.model_warmup[0].inputs[meta["inputs"][0]["name"]].zero_data
    ensemble = validate_config(ensemble_config(meta, RepositoryOptions()), "seg_ensemble")
    steps = ensemble.ensemble_scheduling.step
    assert ensemble.platform == "ensemble" and [s.model_name for s in steps] == ["seg_preprocess", "seg_trt",
                                                                                 "seg_postprocess"]
    assert dict(steps[1].input_map) == {meta["inputs"][0]["name"]: "preprocessed"}


def test_bundled_tritonserver_answers_like_infer(onnx_model, tmp_path):
    require("pytriton", "tritonclient")
    import onnxruntime as ort
    import tritonclient.http as http

    assert main(["export-triton", "--model", str(onnx_model), "-o", str(tmp_path / "repo"), "--cpu"]) == 0
    assert main(["infer", *map(str, PHOTOS), "--model", str(onnx_model), "-o", str(tmp_path / "labels"),
                 "--backend", "onnxruntime-cpu"]) == 0
    ports = tritonserver.free_ports()
    models = ["seg", "seg_preprocess", "seg_postprocess"]
    process = tritonserver.start(tmp_path / "repo", tmp_path, ports, models)
    try:
        tritonserver.wait_ready(process, ports[0], models, tmp_path / "tritonserver.log")
        client = http.InferenceServerClient(f"127.0.0.1:{ports[0]}")
        call = functools.partial(tritonserver.infer, client)

        spec = PreprocessSpec.from_metadata(Artifact.open(onnx_model).preprocessing)
        session = ort.InferenceSession(str(onnx_model / "model.opt.onnx"), providers=["CPUExecutionProvider"])
        for photo in PHOTOS:
            want = np.asarray(Image.open(tmp_path / "labels" / f"{photo.stem}.png"))
            jpeg = ("BYTES", np.array([[photo.read_bytes()]], dtype=object))
            np.testing.assert_array_equal(call("seg", image_bytes=jpeg).as_numpy("labels")[0], want)
            pre = call("seg_preprocess", image_bytes=jpeg)
            image = np.asarray(Image.open(photo).convert("RGB"))[:, :, ::-1]
            np.testing.assert_array_equal(pre.as_numpy("input")[0], preprocess_cpu(np.ascontiguousarray(image), spec))
            scores = session.run(None, {session.get_inputs()[0].name: pre.as_numpy("input")})[0]
            post = call("seg_postprocess", scores=("FP32", scores), original_hw=("INT32", pre.as_numpy("original_hw")))
            np.testing.assert_array_equal(post.as_numpy("labels")[0], want)
        _bad_request_fails_alone(f"127.0.0.1:{ports[0]}", PHOTOS[1].read_bytes())
        client.close()  # an open keep-alive connection would hold Triton's shutdown until its exit timeout
    finally:
        assert tritonserver.stop(process) == 0


def _bad_request_fails_alone(url: str, jpeg: bytes) -> None:
    """A corrupt image gets its own error; good requests sent at the same time are still answered."""
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    outcomes: dict[str, object] = {}

    def send(key: str, data: bytes) -> None:
        client = http.InferenceServerClient(url)  # one per thread: the HTTP client is not thread-safe
        request = http.InferInput("image_bytes", [1, 1], "BYTES")
        request.set_data_from_numpy(np.array([[data]], dtype=object))
        try:
            outcomes[key] = client.infer("seg", [request]).as_numpy("labels")
        except InferenceServerException as exc:
            outcomes[key] = str(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=send, args=(f"good{i}", jpeg)) for i in range(4)]
    threads.append(threading.Thread(target=send, args=("bad", jpeg[:300])))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    bad = str(outcomes["bad"])
    assert "image_bytes[0]: " in bad and ("can decode" in bad or "truncated" in bad)
    assert all(isinstance(outcomes[f"good{i}"], np.ndarray) for i in range(4)), outcomes
