"""`infer --ray` against a local `infer` from the same files (issue #21's target: ≥ 0.8×), as a user runs
them: each a whole `deploy-kit infer` process. Each runs on N and on 3N files, the best of --repeats each;
the difference, 2N / (wall(3N) - wall(N)), is the rate once running, with the fixed start (Python, Ray's
processes, the actors, the model, cuDNN's search) cancelled out; the whole runs' rates are kept too, and
for Ray the actors' own time from the manifest (what Ray's scheduling and data movement add is the rest).
(A start varies by a second or two from run to run: with 480 files more, one difference measured 174
img/s where the actor's own rate was 300.) Files: the 24 generated 1024x2048 JPEG street scenes of
dynamic_shapes.py, copied. Writes one JSON file.

    python benchmarks/ray_vs_local.py --model bench/ [--files 960] [--repeats 2] [--batch 8] [--actors 1:1]
        [--out benchmarks/results/ray-vs-local.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow.parquet as pq  # noqa: E402

from deploy_kit.benchmark import machine_info  # noqa: E402
from deploy_kit.cluster import MANIFEST  # noqa: E402
from dynamic_shapes import FULL, write_jpegs  # noqa: E402  (this folder: the same 24 street scenes)


def wall(arguments: list[str], out: Path) -> tuple[float, float]:
    """Seconds of one whole `deploy-kit infer` process, which must succeed, and the seconds its Ray actors
    spent in their calls (0 without Ray); its outputs are then removed."""
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "deploy_kit", "infer", *arguments, "-o", str(out)],
                         capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"infer {' '.join(arguments)} failed ({run.returncode}):\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    print(run.stdout.strip().splitlines()[-1], f"[{seconds:.1f} s]", flush=True)
    manifest = out / MANIFEST
    busy = sum(pq.read_table(manifest).column("seconds").to_pylist()) if manifest.is_file() else 0.0
    shutil.rmtree(out)
    return seconds, busy


def copies(folder: Path, count: int, scenes: list[Path]) -> Path:
    folder.mkdir(parents=True)
    for index in range(count):
        shutil.copyfile(scenes[index % len(scenes)], folder / f"{index:05d}.jpg")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--files", type=int, default=960, help="files in the smaller run (the larger has 3x)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each; the fastest counts")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--actors", default="1:1")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray-vs-local.json")
    args = parser.parse_args()
    common = ["--model", args.model, "--batch", str(args.batch), "--backend", args.backend]
    ways = {"local": common, "ray": [*common, "--ray", "--actors", args.actors]}
    result: dict[str, object] = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "files": args.files,
                                 "batch": args.batch, "actors": args.actors, "model": args.model}
    small, large = args.files, 3 * args.files
    with tempfile.TemporaryDirectory(prefix="deploy-kit-ray-vs-local-") as scratch:
        scenes = sorted(write_jpegs(Path(scratch) / "scenes", 24, [FULL]).iterdir())
        folders = {n: copies(Path(scratch) / f"files{n}", n, scenes) for n in (small, large)}
        for way, arguments in ways.items():
            runs = {n: min(wall([str(folder), *arguments], Path(scratch) / f"out-{way}") for _ in range(args.repeats))
                    for n, folder in folders.items()}
            more = runs[large][0] - runs[small][0]
            if more <= 0:
                raise SystemExit(f"{way}: {large} files took no longer than {small}: use more --files")
            entry = {"wall_s": {str(n): s for n, (s, _) in runs.items()}, "whole_run_img_per_s": large / runs[large][0],
                     "running_img_per_s": (large - small) / more,
                     "start_s": runs[small][0] - more * small / (large - small)}
            if runs[large][1]:  # Ray: the actors' time in their calls, and their rate in it
                entry |= {"actor_busy_s": {str(n): b for n, (_, b) in runs.items()},
                          "actor_img_per_s": large / runs[large][1]}
            result[way] = entry
    local, ray = result["local"], result["ray"]
    assert isinstance(local, dict) and isinstance(ray, dict)
    result["ratio_running"] = ray["running_img_per_s"] / local["running_img_per_s"]
    result["ratio_whole_run"] = ray["whole_run_img_per_s"] / local["whole_run_img_per_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
