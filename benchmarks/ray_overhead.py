"""Ray's own cost per batch in `infer --ray`'s pipeline, apart from segmentation: the same Ray Data plan
(`read_binary_files` with paths, one block per actor batch, `map_batches` on an actor pool, result rows
back to the driver) with an actor that touches every byte and returns the same row columns but segments
nothing. The marginal cost per batch is measured from two dataset sizes, so Ray's start, the actors'
start and the first batches fall out. Writes one JSON file; benchmarks/README.md turns it into the
projection for 8 and 64 GPU nodes.

    python benchmarks/ray_overhead.py [--files 256] [--kb 400] [--batch 8,32] [--actors 1]
        [--out benchmarks/results/ray-overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy_kit.benchmark import machine_info  # noqa: E402
from deploy_kit.cluster import READS_IN_FLIGHT  # noqa: E402


class TouchBytes:
    """An actor that does what SegmentBatch does around the model: reads every input's bytes and returns
    one (source, output, status, error, seconds, worker) row per input."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        touched = [bytes(data)[-1:] for data in batch["bytes"]]  # SegmentBatch copies each input's bytes too
        paths = [str(path) for path in batch["path"]]
        return {"source": paths, "output": [p + ".png" for p in paths], "status": ["written"] * len(touched),
                "error": [""] * len(paths), "seconds": [0.0] * len(paths), "worker": [""] * len(paths)}


def run(files: list[str], batch: int, actors: int) -> float:
    """Seconds from building the plan to the last row at the driver."""
    import ray

    started = time.perf_counter()
    dataset = ray.data.read_binary_files(files, include_paths=True, num_cpus=0, concurrency=READS_IN_FLIGHT,
                                         override_num_blocks=-(-len(files) // batch))
    rows = dataset.map_batches(TouchBytes, batch_size=batch, batch_format="numpy",
                               compute=ray.data.ActorPoolStrategy(min_size=actors, max_size=actors,
                                                                    max_concurrent_calls_per_actor=2), num_cpus=1)
    count = sum(len(b["source"]) for b in rows.iter_batches(batch_format="numpy", batch_size=None))
    assert count == len(files), (count, len(files))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=256, help="files in the smaller run (the larger has twice)")
    parser.add_argument("--kb", type=int, default=400, help="bytes per file, as a 1024x2048 JPEG")
    parser.add_argument("--batch", default="8,32")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-results/ray-overhead.json"))
    args = parser.parse_args()
    import ray

    ray.init(address="local", num_cpus=max(2, args.actors + 1), include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="deploy-kit-ray-overhead-") as scratch:
        rng = np.random.default_rng(0)
        paths = []
        for index in range(2 * args.files):
            path = os.path.join(scratch, f"{index:06d}.jpg")
            Path(path).write_bytes(rng.integers(0, 256, args.kb * 1024, np.uint8).tobytes())
            paths.append(path)
        for batch in (int(b) for b in args.batch.split(",")):
            run(paths[:batch * 2], batch, args.actors)  # warm: worker processes, imports
            small = min(run(paths[:args.files], batch, args.actors) for _ in range(args.repeats))
            large = min(run(paths, batch, args.actors) for _ in range(args.repeats))
            marginal = (large - small) / (args.files / batch)
            rows.append({"batch": batch, "files_small": args.files, "seconds_small": small,
                         "files_large": 2 * args.files, "seconds_large": large,
                         "marginal_ms_per_batch": marginal * 1000, "marginal_ms_per_image": marginal * 1000 / batch})
            print(json.dumps(rows[-1]), flush=True)
    ray.shutdown()
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "ray": ray.__version__,
              "kb_per_file": args.kb, "actors": args.actors, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
