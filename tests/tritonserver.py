"""Running the tritonserver that nvidia-pytriton ships on a model repository, for tests: python backend
only, listening on 127.0.0.1, with the four set-up facts it needs (issue #14)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from deploy_kit.serve.pytriton_server import prepare_python_backend_environment


def free_ports(count: int = 3) -> tuple[int, ...]:
    """Ports nothing listens on now (HTTP, gRPC, metrics), on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = tuple(s.getsockname()[1] for s in sockets)
    for s in sockets:
        s.close()
    return ports


def start(repository: Path, scratch: Path, ports: tuple[int, int, int], models: list[str],
          log: Path | None = None) -> subprocess.Popen:
    """tritonserver on `repository`, its output in `log` (default: scratch/tritonserver.log)."""
    import pytriton

    server = Path(pytriton.__file__).parent / "tritonserver"
    backends = scratch / "backends"
    shutil.copytree(server / "backends", backends)
    # 1. the python backend's stub for this Python, beside the backend library
    stub = server / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub"
    shutil.copy2(stub, backends / "python" / stub.name)
    # 2. and 3.: the wheel's own libraries and this interpreter's libpython, this environment's bin first
    prepare_python_backend_environment()
    env = dict(os.environ)
    http, grpc, metrics = ports
    command = [str(server / "bin" / "tritonserver"), f"--model-repository={repository}",
               f"--backend-directory={backends}", "--http-address=127.0.0.1", f"--http-port={http}",
               "--grpc-address=127.0.0.1", f"--grpc-port={grpc}", "--metrics-address=127.0.0.1",
               f"--metrics-port={metrics}", "--model-control-mode=explicit",
               *(f"--load-model={m}" for m in models), "--exit-timeout-secs=20"]
    return subprocess.Popen(command, env=env, stdout=(log or scratch / "tritonserver.log").open("w"), stderr=subprocess.STDOUT)


def wait_ready(process: subprocess.Popen, http: int, models: list[str], log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not all(_ready(http, m) for m in models):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(log.read_text()[-4000:])
        time.sleep(0.5)


def _ready(http: int, model: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/{model}/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop(process: subprocess.Popen) -> int:
    """SIGTERM (tritonserver ignores SIGINT in a background job), then SIGKILL by PID if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
    return process.wait(timeout=30)


def infer(client, model: str, **inputs: tuple[str, np.ndarray]):  # type: ignore[no-untyped-def]
    """One HTTP request to `model` with named (Triton datatype, array) inputs; tritonclient's InferResult."""
    import tritonclient.http as http

    requests = []
    for name, (datatype, array) in inputs.items():
        requests.append(http.InferInput(name, list(array.shape), datatype))
        requests[-1].set_data_from_numpy(array)
    return client.infer(model, requests)
