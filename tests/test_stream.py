"""The streaming pipeline behind `infer`: same labels as `predict`, input order kept, one bad input is
that input's error only, bounded read-ahead, and Ctrl-C leaves only whole outputs (exit 130)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy_kit import Segmenter
from deploy_kit.errors import InputImageError
from deploy_kit.runtime.stream import BatchOutputs, stream

from .conftest import PHOTOS


@pytest.fixture(scope="module")
def onnx_model(onnx_only) -> Path:
    return onnx_only("argmax")


def test_stream_gives_predicts_labels_in_input_order_with_errors_in_place(onnx_model, tmp_path, photos):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(PHOTOS[0].read_bytes()[:3000])
    sources = [PHOTOS[0], broken, *PHOTOS[1:], photos[2], np.zeros((5, 5), np.uint8)]
    with Segmenter(onnx_model, backend="onnxruntime-cpu", max_batch=2) as segmenter:
        items = list(segmenter.stream(sources, workers=3))
        want = segmenter.predict(photos)
    assert [item.source is source for item, source in zip(items, sources)] == [True] * len(sources)
    assert isinstance(items[1].error, InputImageError) and "truncated" in items[1].error.one_line()
    assert "shape (5, 5)" in items[-1].error.one_line()
    labels = [items[0].labels] + [item.labels for item in items[2:-1]]
    for got, expected in zip(labels, want + [want[2]]):
        np.testing.assert_array_equal(got, expected)


def test_read_ahead_is_bounded():
    started: list[int] = []
    lock = threading.Lock()

    def decode(index: int) -> np.ndarray:
        with lock:
            started.append(index)
        return np.full((4, 4, 3), index % 250, np.uint8)

    items = stream(iter(range(10_000)), decode, lambda images: lambda: BatchOutputs([im[:, :, 0] for im in images]), batch=4,
                   workers=3)
    first = next(items)
    assert first.labels is not None and first.labels[0, 0] == 0
    time.sleep(0.2)
    assert len(started) <= 2 * 4 + 3 + 4  # the window, refilled once while the first batch ran
    items.close()


def test_a_live_frame_is_segmented_without_waiting_for_the_next():
    """A live source's iterator blocks until a frame arrives: each frame's labels come out while the
    next frame has not arrived yet (the camera below sends frame k+1 only once frame k's labels are out)."""
    yielded = threading.Event()

    def camera():
        for index in range(5):
            yield index
            assert yielded.wait(5), f"frame {index} was not segmented before frame {index + 1} arrived"
            yielded.clear()

    items = stream(camera(), lambda index: np.full((4, 4, 3), index, np.uint8),
                   lambda images: lambda: BatchOutputs([im[:, :, 0] for im in images]), batch=1, workers=1, live=True)
    for index, item in enumerate(items):
        assert item.labels is not None and item.labels[0, 0] == index
        yielded.set()
    assert index == 4


def test_batches_in_flight_are_collected_in_order_and_fail_alone():
    events: list[str] = []

    def submit(images: list[np.ndarray]):
        first = int(images[0][0, 0, 0])
        if first == 8:
            raise InputImageError("this batch cannot start")
        events.append(f"submit {first}")

        def wait() -> BatchOutputs:
            events.append(f"wait {first}")
            return BatchOutputs([im[:, :, 0] for im in images])
        return wait

    items = list(stream(iter(range(14)), lambda i: np.full((2, 2, 3), i, np.uint8), submit, batch=2, workers=2,
                        in_flight=3))
    assert [int(item.labels[0, 0]) if item.labels is not None else None for item in items] == \
        [0, 1, 2, 3, 4, 5, 6, 7, None, None, 10, 11, 12, 13]
    assert all("cannot start" in item.error.one_line() for item in items[8:10])
    # three batches are started before the first is waited for, and each wait is in input order
    assert events[:4] == ["submit 0", "submit 2", "submit 4", "wait 0"]
    assert [e for e in events if e.startswith("wait")] == [f"wait {i}" for i in (0, 2, 4, 6, 10, 12)]


def test_stopping_early_collects_the_batches_in_flight():
    """A consumer that stops early leaves no batch uncollected: the session's slots come back."""
    collected: list[int] = []

    def submit(images: list[np.ndarray]):
        first = int(images[0][0, 0, 0])
        return lambda: collected.append(first) or BatchOutputs([im[:, :, 0] for im in images])

    items = stream(iter(range(40)), lambda i: np.full((2, 2, 3), i, np.uint8), submit, batch=2, workers=2,
                   in_flight=3)
    assert next(items).labels[0, 0] == 0
    items.close()
    assert collected == [0, 2, 4]  # the first batch, then the two still in flight at the stop


def test_interrupted_infer_leaves_only_whole_outputs(onnx_model, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(150):
        shutil.copy(PHOTOS[index % len(PHOTOS)], folder / f"{index:03d}.jpg")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "deploy_kit", "infer", str(folder), "-o", str(out), "--model",
                                str(onnx_model), "--backend", "onnxruntime-cpu", "--overlay"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*.png"))) < 3:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    written = sorted(out.glob("*.png"))
    assert 3 <= len(written) < 150
    for label in written:
        with Image.open(label) as image:
            image.load()  # a partial PNG fails here
    assert not [p for p in os.listdir(out) if ".tmp" in p]
