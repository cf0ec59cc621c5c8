"""`deploy-kit serve` on a real Triton (the tritonserver PyTriton ships) with a real Paddle-exported
model on ONNX Runtime CPU: HTTP and gRPC answers equal to `infer`, dynamic batching in Triton's own
statistics, a bounded load test, bad requests answered with errors, SIGTERM exits 0. The server listens
on 127.0.0.1 only, on free ports, and is stopped by its PID."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from deploy_kit.cli import main
from deploy_kit.serve.tritonserver import model_ready

from . import tritonserver
from .conftest import PHOTOS, require

MAX_PIXELS = 300_000  # above every test photo, below a 600x600 image


@pytest.fixture(scope="module")
def server(onnx_model, tmp_path_factory):
    yield from _served(onnx_model, tmp_path_factory, "--max-queue-delay-us", "20000")


@pytest.fixture(scope="module")
def tritonserver_served(onnx_model, tmp_path_factory):
    """`serve --server tritonserver`: two instances, each a python-backend process of its own."""
    yield from _served(onnx_model, tmp_path_factory, "--server", "tritonserver", "--instances", "2",
                       "--max-queue-delay-us", "20000")


def _served(model: Path, tmp_path_factory, *options: str):
    require("pytriton", "tritonclient")
    http, grpc, metrics = tritonserver.free_ports()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with log.open("w") as handle:
        process = subprocess.Popen([sys.executable, "-m", "deploy_kit", "serve", "--model", str(model),
                                    "--backend", "onnxruntime-cpu", "--address", "127.0.0.1", "--http-port", str(http),
                                    "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--max-batch", "8",
                                    "--max-pixels", str(MAX_PIXELS), *options],
                                   stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not model_ready("127.0.0.1", http, "seg"):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield {"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}", "metrics": f"127.0.0.1:{metrics}",
               "process": process, "log": log}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def _http_infer(url: str, jpeg: bytes) -> np.ndarray:
    import tritonclient.http as http

    request = http.InferInput("image_bytes", [1, 1], "BYTES")
    request.set_data_from_numpy(np.array([[jpeg]], dtype=object))
    client = http.InferenceServerClient(url)
    try:
        return client.infer("seg", [request]).as_numpy("labels")[0]
    finally:
        client.close()  # an idle connection left open holds a stopping Triton for its exit timeout


def test_http_and_grpc_answer_what_infer_writes(server, onnx_model, tmp_path):
    import tritonclient.grpc as grpc

    assert main(["infer", *map(str, PHOTOS), "--model", str(onnx_model), "-o", str(tmp_path),
                 "--backend", "onnxruntime-cpu"]) == 0
    client = grpc.InferenceServerClient(server["grpc"])
    for photo in PHOTOS:
        want = np.asarray(Image.open(tmp_path / f"{photo.stem}.png"))
        np.testing.assert_array_equal(_http_infer(server["http"], photo.read_bytes()), want)
        image = cv2.imread(str(photo))
        request = grpc.InferInput("image", [1, *image.shape], "UINT8")
        request.set_data_from_numpy(image[None])
        np.testing.assert_array_equal(client.infer("seg", [request]).as_numpy("labels")[0], want)


def test_dynamic_batching_shows_in_tritons_statistics(server):
    jpeg = PHOTOS[1].read_bytes()
    threads = [threading.Thread(target=_http_infer, args=(server["http"], jpeg)) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    counts = _counts(server)
    assert 0 < counts["nv_inference_exec_count"] < counts["nv_inference_count"], counts  # requests ran together


def test_bounded_load_has_no_failures(server, tmp_path):
    clients, seconds = 8, float(os.environ.get("DEPLOY_KIT_LOAD_SECONDS", "10"))
    jpegs = [p.read_bytes() for p in PHOTOS]
    latencies: list[float] = []
    failures: list[str] = []
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        count = 0
        while time.monotonic() < stop and count < 10_000:
            started = time.perf_counter()
            try:
                _http_infer(server["http"], jpegs[(index + count) % len(jpegs)])
                latencies.append((time.perf_counter() - started) * 1000)
            except Exception as exc:  # any failure is counted, the load goes on
                failures.append(str(exc)[:200])
            count += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    elapsed = time.monotonic() - started
    result = {"clients": clients, "seconds": round(elapsed, 2), "requests": len(latencies), "failed": len(failures),
              "requests_per_s": len(latencies) / elapsed, "p50_ms": float(np.percentile(latencies, 50)),
              "p99_ms": float(np.percentile(latencies, 99)), "backend": "onnxruntime-cpu",
              "images": "tests/data/photos (JPEG bytes over HTTP)"}
    out = Path(os.environ.get("DEPLOY_KIT_RESULTS_DIR", tmp_path))
    (out / "serve-load.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    assert failures == [] and len(latencies) >= clients


def test_bad_requests_get_errors_and_the_server_goes_on(server):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(server["http"])

    def refused(name: str, datatype: str, array: np.ndarray) -> str:
        """Triton's own error, for a request its model configuration does not allow."""
        with pytest.raises(InferenceServerException) as caught:
            _infer(client, name, datatype, array)
        return str(caught.value)

    image = cv2.imread(str(PHOTOS[1]))
    assert "FP32" in refused("image", "FP32", image[None].astype(np.float32))  # wrong dtype
    assert "image" in refused("image", "UINT8", image[None, :, :, 0])  # wrong rank
    assert refused("image_bytes", "BYTES", np.zeros((0, 1), dtype=object))  # an empty batch
    corrupt = _infer(client, "image_bytes", "BYTES", np.array([[PHOTOS[1].read_bytes()[:200]]], dtype=object))
    line = _error(corrupt)
    assert line.startswith("image_bytes[0]: ") and ("can decode" in line or "truncated" in line), line
    assert corrupt.as_numpy("labels") is None
    big = cv2.imencode(".png", np.zeros((600, 600, 3), np.uint8))[1].tobytes()
    assert "above the limit of 300,000" in _error(_infer(client, "image_bytes", "BYTES", np.array([[big]], dtype=object)))
    good = _infer(client, "image_bytes", "BYTES", np.array([[PHOTOS[1].read_bytes()]], dtype=object))
    assert _error(good) == "" and good.as_numpy("labels")[0].shape == image.shape[:2]
    log = server["log"].read_text()
    assert "request failed: image_bytes[0]: " in log and "Traceback" not in log, log[-3000:]


def test_a_bad_request_fails_alone_in_its_dynamic_batch(server):
    """Eight requests at once, batched together by Triton (20 ms queue delay): the corrupt one gets its
    error, the seven others their labels, equal to what they get alone."""
    import tritonclient.http as http

    jpeg = PHOTOS[2].read_bytes()
    alone = _http_infer(server["http"], jpeg)
    payloads = [jpeg] * 3 + [jpeg[:200]] + [jpeg] * 4
    results: list = [None] * len(payloads)
    barrier = threading.Barrier(len(payloads))
    before = _counts(server)

    def send(index: int) -> None:
        client = http.InferenceServerClient(server["http"])
        barrier.wait()
        results[index] = _infer(client, "image_bytes", "BYTES", np.array([[payloads[index]]], dtype=object))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    after = _counts(server)
    assert after["nv_inference_exec_count"] - before["nv_inference_exec_count"] < len(payloads)  # batched
    assert _error(results[3]).startswith("image_bytes[0]: ")
    for index in (0, 1, 2, 4, 5, 6, 7):
        assert _error(results[index]) == ""
        np.testing.assert_array_equal(results[index].as_numpy("labels")[0], alone)


def _infer(client, name: str, datatype: str, array: np.ndarray):
    import tritonclient.http as http

    request = http.InferInput(name, list(array.shape), datatype)
    request.set_data_from_numpy(array)
    return client.infer("seg", [request])


def _error(result) -> str:
    error = result.as_numpy("error")
    return "" if error is None else error.reshape(-1)[0].decode()


def _counts(server) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{server['metrics']}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {name: sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith(name + "{") and 'model="seg"' in line)
            for name in ("nv_inference_count", "nv_inference_exec_count")}


def test_a_clean_start_prints_what_infer_prints(server):
    """Backend and why, where it listens, how to stop it and where Triton's own log went; not Triton's
    log lines (on a machine without a GPU they include alarming errors about CUDA and NVML)."""
    lines = server["log"].read_text().splitlines()
    assert lines[lines.index(next(l for l in lines if l.startswith("backend: onnxruntime-cpu")))+1].startswith(
        "serving seg on http://127.0.0.1:")
    assert "Triton's log: " in server["log"].read_text()
    triton_lines = [l for l in lines if re.match(r"^[IWE]\d{4} ", l) or "CudaDriverHelper" in l
                    or "model_config_content_name_" in l]
    assert triton_lines == [], triton_lines
    assert len([l for l in lines if not l.startswith("WARNING deploy_kit")]) <= 4, lines


def test_sigterm_drains_and_exits_zero(server):
    process = server["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert "stopped" in server["log"].read_text()


def test_instances_go_on_the_devices_in_turn(capsys):
    """`--device 0,1` places the instances on both GPUs in turn; a bad list is one line and exit 2."""
    from deploy_kit.cli.serve import _devices

    assert _devices("0,1") == (0, 1) and _devices("2") == (2,)
    assert main(["serve", "--device", "0,x"]) == 2
    assert "bad --device '0,x'" in capsys.readouterr().err


def test_tritonserver_mode_answers_what_infer_writes_from_processes_of_its_own(tritonserver_served, onnx_model,
                                                                                 tmp_path):
    import psutil

    assert main(["infer", *map(str, PHOTOS), "--model", str(onnx_model), "-o", str(tmp_path),
                 "--backend", "onnxruntime-cpu"]) == 0
    for photo in PHOTOS:
        want = np.asarray(Image.open(tmp_path / f"{photo.stem}.png"))
        np.testing.assert_array_equal(_http_infer(tritonserver_served["http"], photo.read_bytes()), want)
    children = psutil.Process(tritonserver_served["process"].pid).children(recursive=True)
    stubs = [c for c in children if "triton_python_backend_stub" in " ".join(c.cmdline())]
    assert len(stubs) == 2, [c.cmdline()[:1] for c in children]  # --instances 2: a process each
    lines = tritonserver_served["log"].read_text().splitlines()
    assert "tritonserver: 2 instance(s) of seg on the CPU, each a process of its own" in lines[0], lines[:3]


def test_tritonserver_mode_fails_a_bad_request_alone(tritonserver_served):
    """Eight requests at once: the corrupt one gets its own Triton error, naming its input; the seven
    others their labels, equal to what they get alone."""
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    jpeg = PHOTOS[2].read_bytes()
    alone = _http_infer(tritonserver_served["http"], jpeg)
    payloads = [jpeg] * 3 + [jpeg[:200]] + [jpeg] * 4
    results: list = [None] * len(payloads)
    barrier = threading.Barrier(len(payloads))

    def send(index: int) -> None:
        client = http.InferenceServerClient(tritonserver_served["http"])
        barrier.wait()
        try:
            results[index] = _infer(client, "image_bytes", "BYTES", np.array([[payloads[index]]], dtype=object))
        except InferenceServerException as exc:
            results[index] = exc
        finally:
            client.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert isinstance(results[3], InferenceServerException) and "image_bytes[0]: " in str(results[3]), results[3]
    for index in (0, 1, 2, 4, 5, 6, 7):
        np.testing.assert_array_equal(results[index].as_numpy("labels")[0], alone)


def test_tritonserver_mode_stops_on_sigterm_with_nothing_left_running(tritonserver_served):
    import psutil

    process = tritonserver_served["process"]
    children = psutil.Process(process.pid).children(recursive=True)
    assert children  # tritonserver and its stubs
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) == 0
    assert tritonserver_served["log"].read_text().splitlines()[-1] == "stopped"
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [c.pid for c in alive]


def test_tritonserver_mode_refuses_what_cannot_run_here(onnx_model, capsys):
    """Without a GPU: a GPU backend, or the GPU's JPEG decoder, is one line and exit 2, before any server."""
    from deploy_kit.machine import detect_gpus

    if detect_gpus():
        pytest.skip("this machine has a GPU")
    assert main(["serve", "--server", "tritonserver", "--model", str(onnx_model), "--backend", "onnxruntime-cuda"]) == 2
    assert "--backend onnxruntime-cuda needs a GPU" in capsys.readouterr().err
    assert main(["serve", "--server", "tritonserver", "--model", str(onnx_model), "--decoder", "gpu"]) == 2
    assert "--decoder gpu needs the instances on a GPU" in capsys.readouterr().err
