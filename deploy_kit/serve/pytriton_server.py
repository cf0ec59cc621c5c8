"""`deploy-kit serve`: Triton Inference Server in-process through PyTriton, with `Segmenter` as the model.

Dynamic batching groups requests; each request's images are segmented together with the other
requests' and its label maps come back at each image's size. Every instance owns its own `Segmenter`
(its own CUDA session), warmed up before Triton starts, so `/v2/health/ready` is true only once every
instance can answer. SIGTERM (or Ctrl-C) stops Triton, which finishes the requests in flight first.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DeployKitError
from ..fileio import cache_root
from ..images import DEFAULT_MAX_PIXELS
from ..segmenter import Segmenter
from .requests import IMAGE, IMAGE_BYTES, LABELS, request_images, stacked_labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """What `deploy-kit serve` takes; the ports are Triton's defaults."""

    model: Path
    name: str = "seg"
    backend: str = "auto"
    device: int = 0
    address: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8
    max_queue_delay_us: int = 2000
    instances: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS
    verbose: bool = False  # Triton's own log on the terminal; else it goes to `triton_log`

    @property
    def triton_log(self) -> Path:
        return cache_root() / "serve" / f"tritonserver-{os.getpid()}.log"


class RequestError(Exception):
    """A request's one-line error (a bad image). PyTriton sends the client, and logs, the traceback of
    whatever the inference callable raises; a user's mistake is not a bug, so this error has none."""

    @property  # type: ignore[override]
    def __traceback__(self) -> None:  # what traceback.format_exception reads
        return None

    @__traceback__.setter
    def __traceback__(self, value: object) -> None:
        pass


class _WithoutRequestErrors(logging.Filter):
    """Drops PyTriton's warning that repeats a RequestError with the stack it was raised through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return RequestError.__name__ not in record.getMessage()


def infer_function(segmenter: Segmenter, max_pixels: int) -> Callable[[list[Any]], list[dict[str, np.ndarray]]]:
    """PyTriton's callable over a list of requests: all their images in batches, labels per request."""

    def infer(requests: list[Any]) -> list[dict[str, np.ndarray]]:
        try:
            per_request = [request_images(request.data, max_pixels) for request in requests]
            labels = segmenter.predict([image for images in per_request for image in images])
            responses, start = [], 0
            for images in per_request:
                responses.append({LABELS: stacked_labels(labels[start:start + len(images)])})
                start += len(images)
            return responses
        except DeployKitError as exc:  # PyTriton answers every request of this batch with the error
            log.warning("request failed: %s", exc.one_line())
            raise RequestError(exc.one_line()) from None

    return infer


def warmed_up(options: ServeOptions) -> Segmenter:
    segmenter = Segmenter(options.model, backend=options.backend, device=options.device,
                          max_batch=options.max_batch)
    segmenter.predict(np.zeros((64, 64, 3), np.uint8))  # kernels compiled, sessions and graphs made
    return segmenter


def serve(options: ServeOptions, on_ready: Callable[[Segmenter], None] = lambda segmenter: None) -> None:
    """Runs Triton until SIGTERM or SIGINT; returns after it stopped."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    prepare_python_backend_environment()
    segmenters = [warmed_up(options) for _ in range(options.instances)]
    if not options.verbose:
        options.triton_log.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("pytriton.proxy.inference").addFilter(_WithoutRequestErrors())
    config = TritonConfig(http_address=options.address, http_port=options.http_port,
                          grpc_address=options.address, grpc_port=options.grpc_port,
                          metrics_address=options.address, metrics_port=options.metrics_port,
                          log_file=None if options.verbose else options.triton_log)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with Triton(config=config) as triton:
            triton.bind(
                model_name=options.name,
                infer_func=[infer_function(s, options.max_pixels) for s in segmenters],
                inputs=[Tensor(name=IMAGE_BYTES, dtype=bytes, shape=(1,), optional=True),
                        Tensor(name=IMAGE, dtype=np.uint8, shape=(-1, -1, 3), optional=True)],
                outputs=[Tensor(name=LABELS, dtype=np.uint8, shape=(-1, -1))],
                config=ModelConfig(max_batch_size=options.max_batch,
                                   batcher=DynamicBatcher(max_queue_delay_microseconds=options.max_queue_delay_us)),
                strict=True)
            on_ready(segmenters[0])
            triton.serve()
    finally:
        signal.signal(signal.SIGTERM, previous)
        for segmenter in segmenters:
            segmenter.close()


def prepare_python_backend_environment() -> None:
    """What tritonserver and its python-backend stub need from the environment they inherit (measured
    with the tritonserver that nvidia-pytriton ships): the wheel's vendored libraries (its CUDA runtime)
    on LD_LIBRARY_PATH, which PyTriton does not find when installed with `pip --target`; this
    interpreter's libpython first, else the stub loads another build's and fails ('_thread.RLock' object
    has no attribute '_recursion_count'); this environment's bin first on PATH, since the stub finds
    Python through PATH (an interpreter with another numpy answers with empty outputs and no error)."""
    import pytriton

    vendored = Path(pytriton.__file__).parents[1] / "nvidia_pytriton.libs"
    if vendored.is_dir():
        _prepend("LD_LIBRARY_PATH", str(vendored))
    _prepend("LD_LIBRARY_PATH", sysconfig.get_config_var("LIBDIR") or "")
    _prepend("PATH", str(Path(sys.executable).parent))


def _prepend(variable: str, entry: str) -> None:
    entries = [e for e in os.environ.get(variable, "").split(os.pathsep) if e and e != entry]
    os.environ[variable] = os.pathsep.join([entry, *entries])


def _interrupt(signum: int, frame: object) -> None:
    # PyTriton's serve() stops Triton gracefully on KeyboardInterrupt; SIGTERM means the same here.
    raise KeyboardInterrupt
