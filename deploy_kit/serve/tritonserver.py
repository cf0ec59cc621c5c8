"""`deploy-kit serve --server tritonserver`: the exported repository's runtime model in the tritonserver
nvidia-pytriton ships, every instance a python-backend process of its own.

PyTriton (`serve`'s default) runs every instance as a thread of one Python process behind a proxy: a
python-backend stub per instance forwards each batch to that process and takes the answer back, which
cost most of each batch's time on the H200 while the model's process and the GPU waited (see the
README's Serving section). Here Triton hands each batch straight to a stub that runs deploy-kit itself.
A bad request is answered with its own Triton error (not an `error` output), as the NGC container's
repository answers it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, DeployKitError
from ..fileio import cache_root
from ..segmenter import resolve_model
from .pytriton_server import ServeOptions, prepare_python_backend_environment
from .repository import RepositoryOptions, export_repository

logger = logging.getLogger(__name__)
READY_SECONDS = 600  # each GPU instance warms up every batch size before it is ready


def start_tritonserver(repository: Path, scratch: Path, address: str, ports: tuple[int, int, int],
                       models: list[str], log: Path | None) -> subprocess.Popen:
    """tritonserver on `repository`, loading `models` only, listening on `address`; its output in `log`
    (None: this process's). Its backends are copied into `scratch` with the python backend's stub for this
    Python beside the backend library, where the backend looks for it."""
    import pytriton

    server = Path(pytriton.__file__).parent / "tritonserver"
    backends = scratch / "backends"
    shutil.copytree(server / "backends", backends)
    stub = server / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub"
    shutil.copy2(stub, backends / "python" / stub.name)
    prepare_python_backend_environment()
    http, grpc, metrics = ports
    command = [str(server / "bin" / "tritonserver"), f"--model-repository={repository}",
               f"--backend-directory={backends}", f"--http-address={address}", f"--http-port={http}",
               f"--grpc-address={address}", f"--grpc-port={grpc}", f"--metrics-address={address}",
               f"--metrics-port={metrics}", "--model-control-mode=explicit",
               *(f"--load-model={m}" for m in models), "--exit-timeout-secs=20"]
    if log is None:
        return subprocess.Popen(command, env=dict(os.environ))
    with log.open("w") as output:  # the child has its own copy of the descriptor
        return subprocess.Popen(command, env=dict(os.environ), stdout=output, stderr=subprocess.STDOUT)


def repository_options(options: ServeOptions, on_gpu: bool) -> RepositoryOptions:
    """The repository `serve` options make: the instances on each listed GPU, or on the CPU."""
    if not on_gpu and options.backend not in ("auto", "onnxruntime-cpu"):
        raise ConfigError(f"--backend {options.backend} needs a GPU, and there is none here",
                          hint="use --backend auto or onnxruntime-cpu")
    cpu = not on_gpu or options.backend == "onnxruntime-cpu"
    if cpu and options.decoder == "gpu":
        raise ConfigError("--decoder gpu needs the instances on a GPU", hint="use --decoder auto or cpu")
    return RepositoryOptions(options.name, options.max_batch, options.instances, options.max_queue_delay_us, cpu,
                             options.max_pixels, backend=options.backend, decoder=options.decoder,
                             gpus=() if cpu else options.devices)


def serve_repository(options: ServeOptions, on_gpu: bool, on_ready: Callable[[RepositoryOptions], None]) -> None:
    """Exports the model's repository into a scratch folder and runs tritonserver on it until SIGTERM or
    SIGINT, which it passes on; returns once Triton stopped (after the requests in flight), raises
    DeployKitError naming its log if Triton fails to start or exits on its own."""
    repository = repository_options(options, on_gpu)
    (cache_root() / "serve").mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="tritonserver-", dir=cache_root() / "serve"))
    log = None if options.verbose else options.triton_log
    try:
        export_repository(resolve_model(options.model, options.devices[0]), scratch / "repository", repository)
        process = start_tritonserver(scratch / "repository", scratch, options.address,
                                     (options.http_port, options.grpc_port, options.metrics_port), [options.name], log)
        _run_until_stopped(process, options, log, lambda: on_ready(repository))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_until_stopped(process: subprocess.Popen, options: ServeOptions, log: Path | None,
                       on_ready: Callable[[], None]) -> None:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # Triton finishes the requests in flight, then exits

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        deadline = time.monotonic() + READY_SECONDS
        host = "127.0.0.1" if options.address in ("0.0.0.0", "") else options.address
        while not stopping and not model_ready(host, options.http_port, options.name):
            if process.poll() is not None or time.monotonic() > deadline:
                raise _failed("tritonserver did not become ready", log)
            time.sleep(0.5)
        if not stopping:
            on_ready()
        code = process.wait()
        if not stopping:
            raise _failed(f"tritonserver exited with code {code}", log)
        if code != 0:  # e.g. clients kept idle connections open past the exit timeout: stopped all the same
            logger.warning("tritonserver stopped with code %d: %s", code, _last_line(log))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stop_tritonserver(process)


def stop_tritonserver(process: subprocess.Popen) -> int:
    """SIGTERM (tritonserver ignores SIGINT in a background job), then SIGKILL by PID if it hangs; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=30)


def model_ready(host: str, http_port: int, model: str) -> bool:
    """Whether Triton on `host` answers that `model` is ready (its HTTP readiness probe)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{http_port}/v2/models/{model}/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _failed(what: str, log: Path | None) -> DeployKitError:
    return DeployKitError(what, path=log, note=_last_line(log) or None, hint="see Triton's log; -v shows it on the terminal")


def _last_line(log: Path | None) -> str:
    if log is None or not log.is_file():
        return ""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
