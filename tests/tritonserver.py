"""Running the tritonserver that nvidia-pytriton ships on a model repository, for tests: python backend
only, listening on 127.0.0.1 (`deploy_kit.serve.tritonserver` starts it, with the set-up facts it needs)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import numpy as np

from deploy_kit.serve.tritonserver import model_ready, start_tritonserver, stop_tritonserver


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
    """tritonserver on `repository`, on 127.0.0.1, its output in `log` (default: scratch/tritonserver.log)."""
    return start_tritonserver(repository, scratch, "127.0.0.1", ports, models, log or scratch / "tritonserver.log")


def wait_ready(process: subprocess.Popen, http: int, models: list[str], log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not all(model_ready("127.0.0.1", http, m) for m in models):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(log.read_text()[-4000:])
        time.sleep(0.5)


def stop(process: subprocess.Popen) -> int:
    return stop_tritonserver(process)


def infer(client, model: str, **inputs: tuple[str, np.ndarray]):  # type: ignore[no-untyped-def]
    """One HTTP request to `model` with named (Triton datatype, array) inputs; tritonclient's InferResult."""
    import tritonclient.http as http

    requests = []
    for name, (datatype, array) in inputs.items():
        requests.append(http.InferInput(name, list(array.shape), datatype))
        requests[-1].set_data_from_numpy(array)
    return client.infer(model, requests)
