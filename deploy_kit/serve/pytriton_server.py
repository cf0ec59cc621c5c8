"""`deploy-kit serve`: Triton Inference Server in-process through PyTriton, with `Segmenter` as the model.

Dynamic batching groups requests; each request's images are segmented together with the other
requests' (JPEG bytes decoded in batches on the GPU's hardware decoder when it runs on a GPU) and its
label maps come back at each image's size. A request whose image is bad is answered with its one-line
`error` and no `labels`; the other requests of its batch get their labels (PyTriton can only fail a
whole batch with a raised error). Every instance owns its own `Segmenter` (its own CUDA session),
warmed up before Triton starts, so `/v2/health/ready` is true only once every instance can answer.
SIGTERM (or Ctrl-C) stops Triton, which finishes the requests in flight first.
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

from ..fileio import cache_root
from ..images import DEFAULT_MAX_PIXELS
from ..segmenter import Segmenter
from .requests import ERROR, IMAGE, IMAGE_BYTES, LABELS, Outcome, segment_requests

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """What `deploy-kit serve` takes; the ports are Triton's defaults."""

    model: Path
    name: str = "seg"
    backend: str = "auto"
    devices: tuple[int, ...] = (0,)  # instances are placed on them in turn
    address: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8
    max_queue_delay_us: int = 2000
    instances: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS
    decoder: str = "auto"
    verbose: bool = False  # Triton's own log on the terminal; else it goes to `triton_log`

    @property
    def triton_log(self) -> Path:
        return cache_root() / "serve" / f"tritonserver-{os.getpid()}.log"


def infer_function(segmenter: Segmenter, max_pixels: int) -> Callable[[list[Any]], list[dict[str, np.ndarray]]]:
    """PyTriton's callable over a list of requests: all their images in batches, a response per request."""

    def infer(requests: list[Any]) -> list[dict[str, np.ndarray]]:
        return [_response(outcome, request.data) for outcome, request in
                zip(segment_requests(segmenter, [request.data for request in requests], max_pixels), requests)]

    return infer


def _response(outcome: Outcome, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The labels, or, for a request that failed, only `error`: its line, once per image it sent."""
    if isinstance(outcome, np.ndarray):
        return {LABELS: outcome}
    log.warning("request failed: %s", outcome.one_line())
    images = max([len(v) for v in inputs.values() if v.ndim] + [1])
    return {ERROR: np.full((images, 1), outcome.one_line().encode(), dtype=object)}


def warmed_up(options: ServeOptions, instance: int) -> Segmenter:
    """Instance `instance`'s segmenter, on the next of the devices in turn, warmed up."""
    device = options.devices[instance % len(options.devices)]
    segmenter = Segmenter(options.model, backend=options.backend, device=device,
                          max_batch=options.max_batch, decoder=options.decoder)
    segmenter.warm_up()  # kernels compiled, sessions planned and graphs captured before any request
    log.info("instance %d: %s", instance, segmenter.describe())
    return segmenter


def serve(options: ServeOptions, on_ready: Callable[[Segmenter], None] = lambda segmenter: None) -> None:
    """Runs Triton until SIGTERM or SIGINT; returns after it stopped."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    prepare_python_backend_environment()
    segmenters = [warmed_up(options, instance) for instance in range(options.instances)]
    if not options.verbose:
        options.triton_log.parent.mkdir(parents=True, exist_ok=True)
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
                outputs=[Tensor(name=LABELS, dtype=np.uint8, shape=(-1, -1)),
                         Tensor(name=ERROR, dtype=bytes, shape=(1,))],
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
