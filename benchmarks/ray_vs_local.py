"""`infer --ray` against a local `infer` from the same files (issue #21's target: ≥ 0.8×), as a user runs
them: each a whole `deploy-kit infer` process. Each runs on N and on 2N files; the difference, N / (wall(2N)
- wall(N)), is the rate once running, with the fixed start (Python, Ray's processes, the actors, the
model, cuDNN's search) cancelled out; the whole runs' rates are kept too. Files: the 24 generated
1024x2048 JPEG street scenes of dynamic_shapes.py, repeated. Writes one JSON file.

    python benchmarks/ray_vs_local.py --model bench/ [--files 480] [--batch 8] [--actors 1:1]
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

from deploy_kit.benchmark import machine_info  # noqa: E402
from dynamic_shapes import FULL, write_jpegs  # noqa: E402  (this folder: the same 24 street scenes)


def wall(arguments: list[str], out: Path) -> float:
    """Seconds of one whole `deploy-kit infer` process, which must succeed; its outputs are then removed."""
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "deploy_kit", "infer", *arguments, "-o", str(out)],
                         capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"infer {' '.join(arguments)} failed ({run.returncode}):\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    print(run.stdout.strip().splitlines()[-1], f"[{seconds:.1f} s]", flush=True)
    shutil.rmtree(out)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--files", type=int, default=480, help="files in the smaller run (the larger has twice)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--actors", default="1:1")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray-vs-local.json")
    args = parser.parse_args()
    common = ["--model", args.model, "--batch", str(args.batch), "--backend", args.backend]
    ways = {"local": common, "ray": [*common, "--ray", "--actors", args.actors]}
    result: dict[str, object] = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "files": args.files,
                                 "batch": args.batch, "actors": args.actors, "model": args.model}
    with tempfile.TemporaryDirectory(prefix="deploy-kit-ray-vs-local-") as scratch:
        folders = {n: write_jpegs(Path(scratch) / f"files{n}", n, [FULL]) for n in (args.files, 2 * args.files)}
        for way, arguments in ways.items():
            seconds = {n: wall([str(folder), *arguments], Path(scratch) / f"out-{way}") for n, folder in folders.items()}
            more = seconds[2 * args.files] - seconds[args.files]
            if more <= 0:
                raise SystemExit(f"{way}: {2 * args.files} files took no longer than {args.files}: use more --files")
            result[way] = {"wall_s": {str(n): s for n, s in seconds.items()},
                           "whole_run_img_per_s": 2 * args.files / seconds[2 * args.files],
                           "running_img_per_s": args.files / more, "start_s": seconds[args.files] - more}
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
