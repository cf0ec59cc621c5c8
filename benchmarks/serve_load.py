"""Load-test `deploy-kit serve` the way perf_analyzer does: a concurrency sweep with a fixed number of
requests in flight per level, over HTTP (binary data) and gRPC, with Triton's own queue and compute
times from its metrics endpoint. Writes one JSON file.

    python benchmarks/serve_load.py --model build/bench --images scenes/ [--concurrency 1,2,4,8,16,32,64]
        [--protocols http,grpc] [--seconds 10] [--instances 2] [--max-batch 8] [--decoder auto]
        [--server pytriton|tritonserver] [--profile CONCURRENCY] [--out benchmarks/results/serve-load.json]

`--server pytriton` (default) measures `deploy-kit serve` (PyTriton: every instance a thread of one
Python process); `--server tritonserver` measures `deploy-kit serve --server tritonserver`, the exported
repository's `seg` model in the tritonserver nvidia-pytriton bundles (every instance a python-backend
process of its own).

The server runs as a child process on 127.0.0.1 (free ports), is stopped by its PID at the end, and its
output goes to a log beside the results. Clients are separate processes (one Python process cannot
keep 64 requests of 400 KB in flight), each sending JPEG bytes from --images in turn. A request that
raises or answers a non-empty `error` counts as failed. "best" is the highest requests/s whose p99
latency is ≤ --p99-ms with no failed request. `--profile` records the server with py-spy during one
concurrency's levels (py-spy on PATH): collapsed stacks of the GIL's holders and of every thread.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy_kit.serve.tritonserver import model_ready  # noqa: E402
from tests.tritonserver import free_ports  # noqa: E402

METRICS = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_exec_count",
           "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
           "nv_inference_request_duration_us")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--images", type=Path, help="folder of JPEGs (default: 24 generated 1024x2048 scenes)")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--protocols", default="http,grpc")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each level")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-queue-delay-us", type=int, default=1000)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--decoder", default="auto")
    parser.add_argument("--clients", type=int, default=8, help="client processes (concurrency split among them)")
    parser.add_argument("--p99-ms", type=float, default=50.0)
    parser.add_argument("--server", choices=("pytriton", "tritonserver"), default="pytriton")
    parser.add_argument("--out", type=Path, default=Path("bench-results/serve-load.json"))
    parser.add_argument("--profile", type=int, metavar="CONCURRENCY",
                        help="record the server with py-spy during this concurrency's levels (collapsed stacks "
                             "beside the results)")
    return parser.parse_args()


def jpegs(folder: Path | None) -> list[bytes]:
    if folder is not None:
        return [p.read_bytes() for p in sorted(folder.glob("*.jp*g"))]
    import cv2

    from deploy_kit.synthetic import SceneSpec, generate_scene

    return [cv2.imencode(".jpg", generate_scene(7, i, SceneSpec(1024, 2048))[0], [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
            .tobytes() for i in range(24)]


def start_server(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, dict[str, int]]:
    http, grpc, metrics = free_ports()
    command = [sys.executable, "-m", "deploy_kit", "serve", "--server", args.server, "--model", str(args.model),
               "--backend", args.backend, "--decoder", args.decoder, "--address", "127.0.0.1", "--http-port", str(http),
               "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--instances", str(args.instances),
               "--max-batch", str(args.max_batch), "--max-queue-delay-us", str(args.max_queue_delay_us)]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 300
    while not model_ready("127.0.0.1", http, "seg"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(process)
            raise SystemExit(f"the server did not become ready; its log:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return process, {"http": http, "grpc": grpc, "metrics": metrics}


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server (by its PID: it stops Triton and Triton its stubs), SIGKILL to its whole process
    group (a session of its own) if it does not stop in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for name in METRICS:
        match = re.search(rf'^{name}{{[^}}]*model="seg"[^}}]*}} ([0-9.e+]+)$', text, re.M)
        values[name] = float(match.group(1)) if match else 0.0
    return values


def client_process(protocol: str, url: str, threads: int, images: list[bytes], start: float, warm_until: float,
                   stop: float, queue: Any) -> None:
    """`threads` closed-loop clients (one request in flight each); latencies of requests that began
    after `warm_until`, and failures."""
    import threading

    import tritonclient.grpc as grpc_client
    import tritonclient.http as http_client

    module = http_client if protocol == "http" else grpc_client
    latencies: list[float] = []
    failures: list[str] = []

    def loop(index: int) -> None:
        client = module.InferenceServerClient(url)
        count = index
        while time.time() < start:
            time.sleep(0.001)
        while time.time() < stop:
            request = module.InferInput("image_bytes", [1, 1], "BYTES")
            request.set_data_from_numpy(np.array([[images[count % len(images)]]], dtype=object))
            began = time.time()
            try:
                result = client.infer("seg", [request])
                error = result.as_numpy("error")
                if error is not None:
                    raise RuntimeError(error.reshape(-1)[0][:200])
                if began >= warm_until:
                    latencies.append(time.time() - began)
            except Exception as exc:  # counted, and the load goes on
                if began >= warm_until:
                    failures.append(str(exc)[:200])
            count += threads
        client.close()

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put((latencies, failures))


def level(protocol: str, ports: dict[str, int], concurrency: int, images: list[bytes], args: argparse.Namespace) -> dict:
    url = f"127.0.0.1:{ports[protocol]}"
    processes = min(args.clients, concurrency)
    split = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    start = time.time() + 2.0  # every client connected before the clock starts
    warm_until, stop = start + args.warmup, start + args.warmup + args.seconds
    queue: Any = multiprocessing.get_context("spawn").Queue()
    children = [multiprocessing.get_context("spawn").Process(
        target=client_process, args=(protocol, url, n, images, start, warm_until, stop, queue)) for n in split]
    for child in children:
        child.start()
    time.sleep(max(0.0, warm_until - time.time()))
    before = metrics(ports["metrics"])
    profilers = _profilers(args, protocol) if concurrency == args.profile else []
    time.sleep(max(0.0, stop - time.time()))
    after = metrics(ports["metrics"])
    for profiler in profilers:
        profiler.wait(timeout=60)
    latencies: list[float] = []
    failures: list[str] = []
    for _ in children:
        got_latencies, got_failures = queue.get(timeout=args.seconds + 300)
        latencies += got_latencies
        failures += got_failures
    for child in children:
        child.join(timeout=60)
    delta = {k: after[k] - before[k] for k in METRICS}
    served = max(1.0, delta["nv_inference_request_success"])
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"protocol": protocol, "concurrency": concurrency, "requests": len(latencies), "failed": len(failures),
            "requests_per_s": len(latencies) / args.seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "triton_queue_ms": delta["nv_inference_queue_duration_us"] / served / 1000,
            "triton_compute_ms": delta["nv_inference_compute_infer_duration_us"] / served / 1000,
            "triton_request_ms": delta["nv_inference_request_duration_us"] / served / 1000,
            "mean_batch": delta["nv_inference_request_success"] / max(1.0, delta["nv_inference_exec_count"]),
            "failures": failures[:5]}


def _profilers(args: argparse.Namespace, protocol: str) -> list[subprocess.Popen]:
    """py-spy sampling the server without pausing it (`--nonblocking`: its pauses distorted an earlier
    profile), twice: only the threads holding the GIL (`--gil`: what the instances' one interpreter spends
    its time on), and every thread, waiting included (`--idle`: what a request waits for)."""
    runs = []
    for mode in ("--gil", "--idle"):
        out = args.out.with_name(f"{args.out.stem}.{protocol}-{args.profile}.{mode[2:]}.txt")
        runs.append(subprocess.Popen(["py-spy", "record", "--pid", str(args.server_pid), mode, "--nonblocking",
                                      "--threads", "--rate", "200", "--duration", str(int(args.seconds)), "--format",
                                      "raw", "-o", str(out)],
                                     stdout=out.with_suffix(".log").open("w"), stderr=subprocess.STDOUT))
    return runs


def main() -> int:
    args = parse_args()
    images = jpegs(args.images)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_suffix(".server.log")
    process, ports = start_server(args, log)
    args.server_pid = process.pid
    rows = []
    try:
        for protocol in args.protocols.split(","):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                row = level(protocol, ports, concurrency, images, args)
                rows.append(row)
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()
                                  if k != "failures"}), flush=True)
    finally:
        stop_server(process)
    within = [r for r in rows if r["p99_ms"] <= args.p99_ms and r["failed"] == 0]
    from deploy_kit.benchmark import machine_info

    report = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "model": str(args.model),
              "images": f"{len(images)} JPEGs, {np.mean([len(i) for i in images]) / 1024:.0f} KB mean",
              "server": {"kind": args.server, "instances": args.instances, "max_batch": args.max_batch,
                         "max_queue_delay_us": args.max_queue_delay_us, "backend": args.backend,
                         "decoder": args.decoder},
              "rows": rows, "best_within_p99": max(within, key=lambda r: r["requests_per_s"]) if within else None,
              "p99_limit_ms": args.p99_ms, "server_log_tail": log.read_text()[-2000:]}
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
