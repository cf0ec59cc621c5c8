"""`infer --ray` on a real two-node Ray cluster (two `ray start` processes, one CPU each) on the loopback
of a private network namespace (`tests/ray_cluster_job.py`): 200 images give exactly the outputs of a
local `infer`; a worker killed mid-run changes nothing; `--skip-existing` redoes only the missing
outputs; sources and outputs on an S3 API (moto's server, read and written through pyarrow's S3
filesystem) give the same labels. Everything the cluster starts is stopped by PID."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from deploy_kit.cli import main
from deploy_kit.cluster import ClusterOptions, rows_for
from deploy_kit.synthetic import SceneSpec, generate_scene

from .conftest import infer_cpu, require

JOB = Path(__file__).with_name("ray_cluster_job.py")
IMAGES = 200


def _labels(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): np.asarray(Image.open(p)) for p in sorted(folder.rglob("*.png"))}


def _manifest(path: str) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.fixture(scope="module")
def cluster_run(onnx_model, tmp_path_factory):
    """The job's results and folders, and a local `infer` of the same images as the reference."""
    require("ray", "pyarrow", "moto", "psutil")
    if not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs unshare and ip (util-linux, iproute2) for a loopback-only network namespace")
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow a private network namespace (unshare --net)")
    work = tmp_path_factory.mktemp("cluster")
    for index in range(IMAGES):
        folder = work / "images" / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{index:03d}.jpg"), generate_scene(9, index, SceneSpec(96, 192))[0])
    (work / "images" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a whole JPEG")
    assert infer_cpu(onnx_model, work / "local", work / "images") == 1  # the broken file fails alone
    try:
        job = subprocess.run(["unshare", "--net", "sh", "-c", f'ip link set lo up && exec "{sys.executable}" '
                              f'"{JOB}" "{work}" "{onnx_model}"'], capture_output=True, text=True, timeout=600)
    finally:
        _stop_leftovers(work / "pids")
    assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
    return json.loads((work / "results.json").read_text()), work


def _stop_leftovers(pids: Path) -> None:
    """The job stops its cluster itself; if it was killed first, its `ray start` processes and whatever
    they started are stopped here, by PID."""
    import psutil

    if not pids.is_file():
        return
    for pid in map(int, pids.read_text().split()):
        if psutil.pid_exists(pid):
            process = psutil.Process(pid)
            for owned in [*process.children(recursive=True), process]:
                owned.kill()


def test_two_nodes_give_the_outputs_of_a_local_run(cluster_run):
    results, work = cluster_run
    report = results["full"]
    assert results["nodes"] == 2 and report["written"] == IMAGES and len(report["failed"]) == 1
    assert "broken.jpg" in report["failed"][0]
    ours, local = _labels(work / "out"), _labels(work / "local")
    assert sorted(ours) == sorted(local) and len(ours) == IMAGES
    assert all(np.array_equal(ours[name], local[name]) for name in local)
    rows = _manifest(str(work / "manifest-full.parquet"))
    assert len(rows) == IMAGES + 1 and len({r["source"] for r in rows}) == IMAGES + 1
    assert [r["status"] for r in rows].count("written") == IMAGES
    workers = {r["worker"] for r in rows}  # the actors that did the rows, named by host, process and backend
    assert workers and all(" pid " in w and "backend: onnxruntime-cpu" in w for w in workers), workers


def test_a_worker_killed_mid_run_changes_nothing(cluster_run):
    results, work = cluster_run
    kill = results["kill"]
    assert kill["killed_pid"] is not None and kill["finished_after_kill"]
    assert kill["written_before_kill"] < IMAGES  # it died with work still to do
    assert kill["report"]["written"] == IMAGES
    ours, local = _labels(work / "out_kill"), _labels(work / "local")
    assert sorted(ours) == sorted(local) and all(np.array_equal(ours[name], local[name]) for name in local)
    rows = _manifest(kill["report"]["manifest"])
    assert len(rows) == IMAGES + 1 and len({r["source"] for r in rows}) == IMAGES + 1  # each input once
    assert not list((work / "out_kill").rglob("*.tmp*"))  # nothing half-written


def test_skip_existing_redoes_only_the_missing_outputs(cluster_run):
    results, work = cluster_run
    resume = results["resume"]
    report = resume["report"]
    assert report["written"] == len(resume["deleted"]) == IMAGES // 2
    assert report["skipped"] == IMAGES - len(resume["deleted"]) and resume["kept_unchanged"]
    rows = _manifest(report["manifest"])
    written = {r["output"] for r in rows if r["status"] == "written"}
    assert written == set(resume["deleted"])
    assert len(rows) == IMAGES + 1  # the skipped ones too, and the broken file tried again
    ours, local = _labels(work / "out"), _labels(work / "local")
    assert all(np.array_equal(ours[name], local[name]) for name in local)


def test_s3_sources_and_outputs_through_pyarrow(cluster_run):
    results, work = cluster_run
    s3 = results["s3"]
    assert s3["report"]["written"] == len(s3["inputs"]) == 12 and not s3["report"]["failed"]
    local = _labels(work / "local")
    for name in s3["inputs"]:
        label = Path(name).with_suffix(".png").name
        want = next(v for k, v in local.items() if Path(k).name == label)
        assert np.array_equal(np.asarray(Image.open(work / "out_s3" / label)), want)
    assert (work / "out_s3" / "deploy-kit-manifest.parquet").is_file()


def test_ray_only_options_need_ray(tmp_path, capsys):
    assert main(["infer", "x.jpg", "-o", str(tmp_path), "--skip-existing"]) == 2
    assert "--skip-existing goes with --ray" in capsys.readouterr().err


def test_a_model_that_cannot_open_fails_the_run_fast(tmp_path, onnx_model, capsys):
    """Every actor fails to open the model: one line, exit 2, no retrying (a local Ray instance on
    the loopback of a private network namespace, like the cluster above)."""
    require("ray", "pyarrow")
    if not shutil.which("unshare") or subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare --net for a loopback-only Ray instance")
    broken = tmp_path / "model"
    shutil.copytree(onnx_model, broken)
    (broken / "model.opt.onnx").write_bytes(b"not an onnx graph")
    cv2.imwrite(str(tmp_path / "one.jpg"), generate_scene(9, 1, SceneSpec(96, 192))[0])
    script = ("import sys; from deploy_kit.cli import main; sys.exit(main(sys.argv[1:]))")
    run = subprocess.run(["unshare", "--net", "sh", "-c", f'ip link set lo up && exec "{sys.executable}" -c "{script}" '
                          f'infer "{tmp_path / "one.jpg"}" -o "{tmp_path / "out"}" --model "{broken}" '
                          '--backend onnxruntime-cpu --ray'], capture_output=True, text=True, timeout=300)
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert run.returncode == 2, run.stderr[-3000:]
    assert len(errors) == 1 and "could not open the model" in errors[0], run.stderr[-3000:]


def test_gpu_actors_take_longer_calls_than_cpu_actors():
    """A call ends by draining the segmenter's batches in flight: GPU actors take 16 batches a call,
    CPU actors 4 (a retried call redoes fewer images); an explicit size is kept."""
    assert rows_for(ClusterOptions(batch=8, gpus_per_worker=1.0)) == 128
    assert rows_for(ClusterOptions(batch=4, gpus_per_worker=0.5)) == 64
    assert rows_for(ClusterOptions(batch=8, gpus_per_worker=0)) == 32
    assert rows_for(ClusterOptions(batch=2, gpus_per_worker=0)) == 16
    assert rows_for(ClusterOptions(batch=8, rows_per_batch=24, gpus_per_worker=1.0)) == 24
