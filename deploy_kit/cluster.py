"""Segmenting image sets larger than one machine on a Ray cluster (`deploy-kit infer SOURCES -o DEST --ray`).

    from deploy_kit.cluster import ClusterOptions, segment_dataset
    report = segment_dataset(["s3://bucket/tiles/"], "s3://bucket/labels/", Path("build/"), ClusterOptions())

Sources and destination are local paths or any filesystem pyarrow knows (`s3://`, `gs://`, `hdfs://`,
`abfs://`). The driver lists the inputs and plans their outputs as `infer` does (a folder keeps its
layout, names never collide); Ray Data reads them as bytes (`read_binary_files`), and a pool of actors,
each holding one `Segmenter` (one GPU each on GPU nodes), decodes, segments and writes each label PNG
(and overlay) itself, atomically (temporary name and rename on a file system, one put on an object
store), returning one small row per input (with the actor that did it: host, process, backend and JPEG
decoder). The driver writes those rows as the run's manifest (Parquet) beside the outputs. Ray retries
the tasks of a worker or node that dies; a bad image is its own error row; a model that cannot be opened
fails the run at once.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .artifact import Artifact
from .errors import ConfigError, DeployKitError, EngineCompatibilityError
from .files import error_line, overlay_jpeg
from .fileio import atomic_output, cache_root, sha256_json, write_bytes_atomic
from .images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, InputImage, collect_inputs, label_png_bytes, plan_outputs
from .segmenter import Segmenter, default_workers, resolve_model

log = logging.getLogger(__name__)
MANIFEST = "deploy-kit-manifest.parquet"
_COLUMNS = ("source", "output", "status", "error", "seconds", "worker")
UNUSABLE = "model-unusable"  # an actor's row status when it could not open the model


READS_IN_FLIGHT = 4


@dataclass(frozen=True)
class ClusterOptions:
    """How `segment_dataset` runs. `address`: None starts a local Ray instance (every GPU of this machine
    gets an actor), "auto" or host:port joins a cluster. `gpus_per_worker`: None gives each actor one
    GPU where the cluster has GPUs, else CPU actors; a fraction shares a GPU. Actors: `min_workers` to
    `max_workers` (None: one per GPU, or per CPU). `rows_per_batch`: images per actor call (Ray needs a
    fixed batch for GPU actors; None: `rows_for`); `batch`: images per inference."""

    address: str | None = None
    backend: str = "auto"
    batch: int = 8
    rows_per_batch: int | None = None
    gpus_per_worker: float | None = None
    min_workers: int = 1
    max_workers: int | None = None
    overlay: bool = False
    skip_existing: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    decoder: str = "auto"  # where each actor decodes JPEGs (Segmenter's `decoder`)


@dataclass
class ClusterReport:
    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)  # one error line each
    seconds: float = 0.0
    manifest: str = ""
    workers: list[str] = field(default_factory=list)  # each actor that wrote rows: host, pid, backend, decoder


@dataclass(frozen=True)
class Location:
    """A filesystem and a path on it (pyarrow's), from a local path or a URI."""

    filesystem: Any
    path: str

    @classmethod
    def of(cls, where: str) -> Location:
        from pyarrow import fs

        if "://" in where:
            try:
                filesystem, path = fs.FileSystem.from_uri(where)
            except Exception as exc:  # pyarrow raises ArrowInvalid / OSError with its own text
                raise ConfigError("not a filesystem pyarrow can open", path=where, note=str(exc).splitlines()[0],
                                  hint="use a local path or s3://, gs://, hdfs://, abfs:// with credentials set") from None
            return cls(filesystem, path.rstrip("/"))
        return cls(fs.LocalFileSystem(), str(Path(where).resolve()))

    @property
    def local(self) -> bool:
        return type(self.filesystem).__name__ == "LocalFileSystem"

    def join(self, relative: PurePosixPath) -> str:
        return f"{self.path}/{relative.as_posix()}"


@dataclass(frozen=True)
class Planned:
    """One input and where its outputs go on the destination (paths on their filesystems)."""

    source: str
    label: str
    overlay: str


def segment_dataset(sources: list[str], dest: str, model: Path, options: ClusterOptions = ClusterOptions(),
                    on_error: Any = lambda line: None) -> ClusterReport:
    """Segments every image under `sources` into `dest` on a Ray cluster; see the module docstring."""
    import ray

    started = time.perf_counter()
    artifact = resolve_model(model)
    source_fs, inputs, report_errors = list_inputs(sources)
    target = Location.of(dest)
    plans, refused = plan_destination(inputs, target)
    report = ClusterReport(failed=[e.one_line() for e in report_errors + refused])
    for line in report.failed:
        on_error(line)
    todo, done = _split_existing(plans, target, options) if options.skip_existing else (plans, [])
    report.skipped = len(done)
    rows: list[dict[str, Any]] = [_row(p, "skipped") for p in done]
    if todo:
        _init_ray(options.address)
        per_call = rows_for(options)
        # Reads only move bytes: they take no CPU slot, so the actors may hold every CPU of the cluster. With
        # no slot to wait for, nothing else bounds them: on a 16-core H200 machine 480 files became 171 read
        # tasks in 176 worker processes, and the run 6.5 img/s. One block per actor batch, a few reads at once.
        dataset = ray.data.read_binary_files([p.source for p in todo], include_paths=True, filesystem=source_fs,
                                             num_cpus=0, concurrency=READS_IN_FLIGHT,
                                             override_num_blocks=-(-len(todo) // per_call))
        # The model's files and the plans go into the object store once; each actor fetches them.
        shared = ray.put({"bundle": model_bundle(artifact), "plans": {p.source: p for p in todo}})
        results = dataset.map_batches(
            SegmentBatch, batch_size=per_call, batch_format="numpy",
            fn_constructor_kwargs={"shared": shared, "dest": dest, "options": options},
            # Two calls per actor: Ray turns the next block into a batch, and the last result into a block,
            # while the actor segments (the segmenting itself stays one call at a time, as Ray Data runs it).
            compute=ray.data.ActorPoolStrategy(min_size=options.min_workers,
                                               max_size=options.max_workers or _default_workers(options),
                                               max_concurrent_calls_per_actor=2),
            **_actor_resources(options))
        try:
            for batch in results.iter_batches(batch_format="numpy", batch_size=None):
                for row in _rows_of(batch):
                    if row["status"] == UNUSABLE:  # stopping the iteration stops the run on every node
                        raise ModelOpenError(row["error"])
                    rows.append(row)
                    if row["worker"] and row["worker"] not in report.workers:
                        report.workers.append(row["worker"])
                    if row["status"] == "written":
                        report.written += 1
                    else:
                        report.failed.append(row["error"])
                        on_error(row["error"])
        except DeployKitError:
            raise
        except Exception as exc:  # Ray wraps what a task raised in its own exception types
            raise _cause(exc) from None
    report.manifest = write_manifest(rows, target)
    report.seconds = time.perf_counter() - started
    return report


def rows_for(options: ClusterOptions) -> int:
    """Images per actor call: as asked, else 16 inference batches on a GPU actor (each call ends by draining
    the segmenter's batches in flight: on the H200 one actor segmented 412 img/s in calls of 32, 491 in calls
    of 128) and 4 on a CPU actor (a retried call redoes fewer images)."""
    if options.rows_per_batch is not None:
        return options.rows_per_batch
    return options.batch * 16 if "num_gpus" in _actor_resources(options) else max(16, 4 * options.batch)


def list_inputs(sources: list[str]) -> tuple[Any, list[InputImage], list[DeployKitError]]:
    """The filesystem the sources share, their images (a folder recursively, with paths relative to it),
    and an error per source that holds none."""
    locations = [Location.of(s) for s in sources]
    if len({type(loc.filesystem).__name__ for loc in locations}) > 1:
        raise ConfigError("the sources are on different filesystems", hint="run once per filesystem")
    if all(loc.local for loc in locations):  # folders, files and globs, exactly as `infer` reads them
        found, errors = collect_inputs(sources)
        return locations[0].filesystem, found, list(errors)
    from pyarrow import fs

    images: list[InputImage] = []
    failures: list[DeployKitError] = []
    for source, loc in zip(sources, locations):
        try:
            info = loc.filesystem.get_file_info(loc.path)
            if info.type == fs.FileType.File:
                images.append(InputImage(Path(loc.path), Path(PurePosixPath(loc.path).name)))
                continue
            listing = [] if info.type == fs.FileType.NotFound else loc.filesystem.get_file_info(
                fs.FileSelector(loc.path, recursive=True))
        except OSError as exc:  # pyarrow's: no bucket, no credentials, no permission
            failures.append(ConfigError("cannot list the source", path=source, note=str(exc).splitlines()[0]))
            continue
        paths = sorted(i.path for i in listing if i.type == fs.FileType.File
                       and PurePosixPath(i.path).suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            failures.append(ConfigError("no images there", path=source, hint="check the path and credentials"))
        images += [InputImage(Path(p), Path(PurePosixPath(p).relative_to(loc.path))) for p in paths]
    return locations[0].filesystem, images, failures


def plan_destination(inputs: list[InputImage], target: Location) -> tuple[list[Planned], list[DeployKitError]]:
    """Output paths as `infer` plans them (never onto an input or each other), on the destination."""
    root = Path(target.path) if target.local else Path("/")
    plans, warnings, refused = plan_outputs(inputs, root)
    for line in warnings:
        log.warning("%s", line)
    return [Planned(str(p.image.resolve()) if target.local else str(p.image),
                    target.join(PurePosixPath(p.label.relative_to(root))),
                    target.join(PurePosixPath(p.overlay.relative_to(root)))) for p in plans], list(refused)


def _split_existing(plans: list[Planned], target: Location, options: ClusterOptions) -> tuple[list[Planned], list[Planned]]:
    """Inputs still to do, and those whose outputs exist (every output is written whole or not at all)."""
    from pyarrow import fs

    info = target.filesystem.get_file_info(fs.FileSelector(target.path, recursive=True, allow_not_found=True))
    existing = {i.path for i in info if i.type == fs.FileType.File}
    done = [p for p in plans if p.label in existing and (not options.overlay or p.overlay in existing)]
    finished = {p.source for p in done}
    return [p for p in plans if p.source not in finished], done


def model_bundle(artifact: Artifact) -> dict[str, bytes]:
    """The files the runtime reads, as bytes: actors on any node rebuild the model folder from them."""
    return {name: (artifact.folder / name).read_bytes() for name in artifact.runtime_files()}


def materialize(bundle: dict[str, bytes]) -> Path:
    """A model folder holding `bundle`, in this node's cache (made once per model)."""
    folder = cache_root() / "cluster" / sha256_json({k: len(v) for k, v in sorted(bundle.items())})[:16]
    for name, data in bundle.items():
        if not (folder / name).is_file() or (folder / name).stat().st_size != len(data):
            write_bytes_atomic(folder / name, data)
    return folder


class ModelOpenError(DeployKitError):
    """An actor could not open the model: the driver stops the run at once instead of Ray retrying."""


class SegmentBatch:
    """One Ray actor: a `Segmenter` (on the GPU Ray gave it, or the CPU), called with batches of file bytes;
    writes each input's outputs and returns one row per input."""

    def __init__(self, shared: Any, dest: str, options: ClusterOptions) -> None:
        import ray

        fetched = ray.get(shared)  # {"bundle": the model's files, "plans": source -> Planned}
        self.plans: dict[str, Planned] = fetched["plans"]
        self.options = options
        self.target = Location.of(dest)
        self.error: str | None = None
        self.worker = f"{socket.gethostname()} pid {os.getpid()}"
        # Threads that decode, and as many that encode and write: two on a one-CPU actor; on a GPU actor, as
        # `infer` has (one H200 actor with two decode threads and writes one at a time ran 51 img/s).
        self.threads = 2 if not ray.get_gpu_ids() else default_workers()
        self.writers = ThreadPoolExecutor(self.threads, thread_name_prefix="deploy-kit-put")
        try:
            self.segmenter: Segmenter | None = Segmenter(materialize(fetched["bundle"]), backend=options.backend,
                                                         max_batch=options.batch, decoder=options.decoder)
            self.worker += f": {self.segmenter.describe()}"
        except Exception as exc:  # any failure: reported from __call__, so the run stops instead of restarting us
            self.segmenter = None
            self.error = exc.one_line() if isinstance(exc, DeployKitError) else f"{type(exc).__name__}: " + \
                (str(exc).strip().splitlines() or [""])[0]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        if self.segmenter is None:  # rows that tell the driver to stop (Ray replaces a raised error's type)
            line = f"a Ray actor could not open the model: {self.error}"
            return _columns([(str(path), "", UNUSABLE, line, 0.0, self.worker) for path in batch["path"]])
        started = time.perf_counter()
        plans = [self.plans[str(path)] for path in batch["path"]]
        data = dict(zip((p.source for p in plans), batch["bytes"]))
        segmenter = self.segmenter
        items = segmenter.stream(plans, decode=lambda p: segmenter.load_bytes(bytes(data[p.source]), p.source,
                                                                             self.options.max_pixels),
                                 workers=self.threads, overlay=self.options.overlay)
        rows = list(self.writers.map(self._finish, items))  # in input order, written meanwhile
        seconds = (time.perf_counter() - started) / max(1, len(rows))
        return _columns([(*row, seconds, self.worker) for row in rows])

    def _finish(self, item: Any) -> tuple[str, str, str, str]:
        plan: Planned = item.source
        if item.error is not None:
            return plan.source, "", "failed", error_line(plan.source, item.error)
        try:
            self._put(plan.label, label_png_bytes(item.labels))
            if self.options.overlay:
                self._put(plan.overlay, overlay_jpeg(plan.overlay, item.labels, item.image, item.overlay))
        except (OSError, DeployKitError) as exc:
            return plan.source, "", "failed", f"{plan.label}: cannot write the result · Note: {exc}"
        return plan.source, plan.label, "written", ""

    def _put(self, path: str, data: bytes) -> None:
        if self.target.local:  # a temporary name, then a rename: never a partial file
            write_bytes_atomic(Path(path), data)
            return
        with self.target.filesystem.open_output_stream(path) as stream:  # one put: whole or absent
            stream.write(data)


def _row(plan: Planned, status: str) -> dict[str, Any]:
    return {"source": plan.source, "output": plan.label, "status": status, "error": "", "seconds": 0.0, "worker": ""}


def _columns(rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """Rows of (source, output, status, error, seconds, worker) as the columns an actor returns."""
    return {name: [row[i] for row in rows] for i, name in enumerate(_COLUMNS)}


def _rows_of(batch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    return [dict(zip(_COLUMNS, values)) for values in zip(*(batch[c].tolist() for c in _COLUMNS))]


def write_manifest(rows: list[dict[str, Any]], target: Location) -> str:
    """One row per input (source, output, status, error, seconds, worker) as Parquet beside the outputs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.float64() if name == "seconds" else pa.string()) for name in _COLUMNS])
    table = pa.Table.from_pylist(rows, schema=schema)
    path = f"{target.path}/{MANIFEST}"
    try:
        if target.local:
            with atomic_output(Path(path)) as tmp:
                pq.write_table(table, str(tmp))
        else:
            with tempfile.TemporaryDirectory() as scratch:
                pq.write_table(table, f"{scratch}/{MANIFEST}")
                with target.filesystem.open_output_stream(path) as stream:
                    stream.write(Path(scratch, MANIFEST).read_bytes())
    except OSError as exc:  # pyarrow's and the OS's: no bucket, no permission, disk full
        raise DeployKitError("cannot write the manifest", path=path, note=str(exc).splitlines()[0],
                             hint="check the destination (-o) exists and is writable") from None
    return path


def _init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    # A local instance ("local": a new one, never one a `ray start` left recorded in /tmp/ray) serves this
    # machine alone: its node is the loopback, not the first network interface.
    ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
             configure_logging=False, log_to_driver=False, _node_ip_address="127.0.0.1" if address is None else None)


def _cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def _actor_resources(options: ClusterOptions) -> dict[str, Any]:
    """One GPU per actor where the cluster has GPUs (or the fraction asked for), else one CPU."""
    gpus = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if _cluster_gpus() else 0.0)
    return {"num_gpus": gpus} if gpus else {"num_cpus": 1}


def _default_workers(options: ClusterOptions) -> int:
    import ray

    gpus = _cluster_gpus()
    per = options.gpus_per_worker or 1.0
    return max(options.min_workers, int(gpus / per) if gpus else int(ray.cluster_resources().get("CPU", 1)))


def _cause(exc: Exception) -> DeployKitError:
    """The DeployKitError a Ray task raised, however Ray wrapped it; else one line of Ray's error."""
    seen: Any = exc
    while seen is not None:
        cause = getattr(seen, "cause", None)  # a RayTaskError's: the exception as the task raised it
        if isinstance(cause, DeployKitError):
            return cause
        if isinstance(seen, DeployKitError):
            return seen
        seen = cause or seen.__cause__
    text = str(exc).strip().splitlines()
    return EngineCompatibilityError("the Ray job failed", note=text[-1] if text else type(exc).__name__,
                                    hint="see the Ray logs of the failed task (deploy-kit -v shows them)")
