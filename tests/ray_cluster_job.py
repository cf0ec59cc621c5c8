"""A two-node Ray cluster and the runs `tests/test_cluster.py` checks, inside a private network namespace
whose only interface is the loopback (`unshare --net`): Ray's GCS and raylets listen on every interface
of their machine, so a namespace is what keeps them on 127.0.0.1. Both nodes (one CPU each) are started
with `ray start --block` and stopped by PID, with every process they started.

    unshare --net sh -c 'ip link set lo up && exec python tests/ray_cluster_job.py WORK MODEL [--bench]'

WORK holds `images/` (made by the test); the runs write `out_*` there and `results.json`. With `--bench`
(benchmarks/README.md): one actor, then one actor on each node, each on the images and on three times as
many, with `infer --ray`'s call size; whole-run and once-running images/s and Ray's own cost per batch
(wall time beyond the actors' compute), into `bench.json`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import psutil

from deploy_kit.cluster import ClusterOptions, ClusterReport, rows_for, segment_dataset

DEADLINE_S = 240


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(ready: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.5)


class Cluster:
    """`ray start --head` and a second `ray start --address` node, one CPU each, on 127.0.0.1."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats", "--block"]
        self._start(["--head", "--port", str(self.port), "--include-dashboard", "false", *common], work / "head.log")
        wait_until(lambda: _port_open(self.port), "the head node's GCS port")
        self._start(["--address", self.address, *common], work / "node2.log")

    def _start(self, arguments: list[str], log: Path) -> None:
        with log.open("wb") as handle:
            self.processes.append(subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", *arguments],
                                                   stdout=handle, stderr=subprocess.STDOUT, start_new_session=True))
        # for the test to stop them by PID should this job itself be killed
        (log.parent / "pids").write_text("\n".join(str(p.pid) for p in self.processes))

    def wait_for_nodes(self, count: int) -> None:
        import ray

        ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
        wait_until(lambda: len([n for n in ray.nodes() if n["Alive"]]) == count, f"{count} Ray nodes")

    def stop(self) -> None:
        """SIGTERM to each `ray start --block` (it stops its node), then SIGKILL to whatever it started
        that is still there, all by PID."""
        started = [child.pid for p in self.processes if psutil.pid_exists(p.pid)
                   for child in psutil.Process(p.pid).children(recursive=True)]
        for process in reversed(self.processes):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for pid in started:
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGKILL)


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def report_of(report: ClusterReport) -> dict[str, Any]:
    return asdict(report)


def run_killing_a_worker(work: Path, model: Path, options: ClusterOptions) -> dict[str, Any]:
    """The run into out_kill, with one actor's worker process killed (SIGKILL, by PID) mid-run."""
    outcome: dict[str, Any] = {}
    out = work / "out_kill"
    runner = threading.Thread(target=lambda: outcome.update(report=segment_dataset([str(work / "images")], str(out),
                                                                                    model, options)))
    runner.start()
    wait_until(lambda: len(list(out.rglob("*.png"))) >= 30 or not runner.is_alive(), "outputs of the run", 120)
    actors = [p for p in psutil.process_iter(["cmdline"]) if "SegmentBatch" in " ".join(p.info["cmdline"] or [])]
    victim = actors[0].pid if actors else None
    written_before = len(list(out.rglob("*.png")))
    if victim is not None:
        os.kill(victim, signal.SIGKILL)
    runner.join(timeout=DEADLINE_S)
    return {"report": report_of(outcome["report"]), "killed_pid": victim, "written_before_kill": written_before,
            "finished_after_kill": not runner.is_alive()}


def run_on_s3(work: Path, model: Path, options: ClusterOptions) -> dict[str, Any]:
    """Sources and destination on an S3 API (moto's server on 127.0.0.1), read and written by pyarrow."""
    from pyarrow import fs

    port = free_port()
    moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: _port_open(port), "the S3 server")
        s3 = fs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True)
        s3.create_dir("bucket")
        local = sorted((work / "images").rglob("*.jpg"))[:12]
        for path in local:
            with s3.open_output_stream(f"bucket/in/{path.name}") as stream:
                stream.write(path.read_bytes())
        query = f"?endpoint_override=127.0.0.1:{port}&scheme=http"
        report = segment_dataset([f"s3://bucket/in{query}"], f"s3://bucket/out{query}", model, options)
        downloaded = work / "out_s3"
        downloaded.mkdir()
        for info in s3.get_file_info(fs.FileSelector("bucket/out", recursive=True)):
            with s3.open_input_stream(info.path) as stream:
                (downloaded / Path(info.path).name).write_bytes(stream.read())
        return {"report": report_of(report), "inputs": [p.name for p in local]}
    finally:
        moto.send_signal(signal.SIGTERM)
        moto.wait(timeout=30)


def bench(work: Path, model: Path, options: ClusterOptions) -> dict[str, Any]:
    """Images/s with one actor (one node's CPU) and with one actor per node, each on N and on 3N images:
    whole runs, and once running (2N / the difference of the walls: the start of the actors and of Ray
    Data's plan falls out); and Ray's cost per batch (wall time beyond the actors' compute)."""
    import pyarrow.parquet as pq

    runs: dict[str, Any] = {}
    images = sorted((work / "images").rglob("*.jpg"))
    warm = _copies(work / "bench-warm", images[:32], 1)
    folders = {len(images): work / "images", 3 * len(images): _copies(work / "bench-3n", images, 3)}
    for actors in (1, 2):
        sized = replace(options, rows_per_batch=None, min_workers=actors, max_workers=actors)
        segment_dataset([str(warm)], str(work / f"warm{actors}"), model, sized)  # caches, workers
        walls: dict[int, float] = {}
        for count in (len(images), 3 * len(images)):
            started, cpu = time.perf_counter(), psutil.cpu_times()
            report = segment_dataset([str(folders[count])], str(work / f"bench{actors}-{count}"), model, sized)
            walls[count] = time.perf_counter() - started
            busy = _busy_seconds(psutil.cpu_times()) - _busy_seconds(cpu)
            assert report.written == count and not report.failed, report
        compute = sum(pq.read_table(report.manifest).column("seconds").to_pylist())
        batches = -(-3 * len(images) // rows_for(sized))
        runs[f"{actors}_actor"] = {"seconds": {str(k): w for k, w in walls.items()},
                                   "whole_run_images_per_s": 3 * len(images) / walls[3 * len(images)],
                                   "running_images_per_s": 2 * len(images) / (walls[3 * len(images)] - walls[len(images)]),
                                   "actor_compute_seconds_3n": compute, "batches_3n": batches,
                                   "machine_cpus_busy_3n": busy / walls[3 * len(images)],
                                   "ray_ms_per_batch_3n": 1000 * (walls[3 * len(images)] - compute / actors) / batches}
    for way in ("whole_run", "running"):
        one, two = runs["1_actor"][f"{way}_images_per_s"], runs["2_actor"][f"{way}_images_per_s"]
        runs[f"two_nodes_over_twice_one_{way}"] = two / (2 * one)
    return runs


def _busy_seconds(times: Any) -> float:
    """CPU seconds the whole machine's processes spent on its cores, from psutil.cpu_times(): neither idle,
    nor waiting for I/O, nor taken by the hypervisor (steal); guest time is already in user time."""
    spent = ("user", "nice", "system", "irq", "softirq")
    return float(sum(getattr(times, name, 0.0) for name in spent))


def _copies(folder: Path, images: list[Path], times: int) -> Path:
    """`images` `times` over under new names (hard links: the same bytes, no more disk)."""
    folder.mkdir(exist_ok=True)
    for round_ in range(times):
        for image in images:
            target = folder / f"{round_}-{image.name}"
            if not target.exists():
                os.link(image, target)
    return folder


def main(work: Path, model: Path, benchmark: bool = False) -> int:
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                       "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"})
    cluster = Cluster(work)
    results: dict[str, Any] = {}
    try:
        cluster.wait_for_nodes(2)
        options = ClusterOptions(address=cluster.address, backend="onnxruntime-cpu", batch=4, rows_per_batch=8,
                                 min_workers=2, max_workers=2)
        results["nodes"] = 2
        if benchmark:
            (work / "bench.json").write_text(json.dumps(bench(work, model, options), indent=2))
            return 0
        results["full"] = report_of(segment_dataset([str(work / "images")], str(work / "out"), model, options))
        shutil.copy(results["full"]["manifest"], work / "manifest-full.parquet")  # the resumed run writes anew
        results["kill"] = run_killing_a_worker(work, model, options)
        labels = sorted((work / "out").rglob("*.png"))
        deleted = labels[::2]
        kept = {str(p): p.stat().st_mtime_ns for p in labels[1::2]}
        for path in deleted:
            path.unlink()
        resumed = segment_dataset([str(work / "images")], str(work / "out"), model,
                                  replace(options, skip_existing=True))
        results["resume"] = {"report": report_of(resumed), "deleted": [str(p) for p in deleted],
                             "kept_unchanged": all((Path(p).stat().st_mtime_ns == t) for p, t in kept.items())}
        results["s3"] = run_on_s3(work, model, options)
    finally:
        import ray

        ray.shutdown()
        cluster.stop()
    (work / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2]), "--bench" in sys.argv[3:]))
