"""`deploy-kit infer` on the CPU: outputs, and bad input that fails one image but not the others."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


from .conftest import PHOTOS, infer_cpu


def test_writes_palette_png_at_original_size_and_overlay(onnx_model, tmp_path, capsys):
    assert infer_cpu(onnx_model, tmp_path / "out", PHOTOS[0], PHOTOS[1], extra=("--overlay", "--batch", "2")) == 0
    out = capsys.readouterr().out
    assert "backend: onnxruntime-cpu" in out
    for photo in PHOTOS[:2]:
        label = Image.open(tmp_path / "out" / f"{photo.stem}.png")
        h, w = cv2.imread(str(photo)).shape[:2]
        assert label.mode == "P" and label.size == (w, h)
        assert np.asarray(label).max() < 5
        assert cv2.imread(str(tmp_path / "out" / f"{photo.stem}_overlay.jpg")).shape == (h, w, 3)


def _bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    good = folder / "good.jpg"
    shutil.copy(PHOTOS[0], good)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("not an image")
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(PHOTOS[1].read_bytes()[:4000])
    return {"good": good, "empty": folder / "empty.png", "text": folder / "notes.png", "truncated": truncated}


def test_bad_images_fail_alone_and_leave_nothing(onnx_model, tmp_path, capsys):
    files = _bad_inputs(tmp_path / "in")
    code = infer_cpu(onnx_model, tmp_path / "out", *files.values(), tmp_path / "missing.jpg")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1  # some inputs failed
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert any(str(files["empty"]) in l and "empty" in l for l in err)
    text = next(line for line in err if str(files["text"]) in line)
    assert "decode" in text and "the name says .png but the content is not such an image" in text
    assert any(str(files["truncated"]) in l and "truncated" in l for l in err)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


def test_unusual_but_valid_images_are_read_as_paddleseg_reads_them(onnx_model, tmp_path):
    src = cv2.imread(str(PHOTOS[2]))
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(src, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(src, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "deep.png"), src.astype(np.uint16) * 257)
    Image.fromarray(src[:, :, ::-1]).convert("CMYK").save(folder / "cmyk.jpg")
    assert infer_cpu(onnx_model, tmp_path / "out", folder) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cmyk.png", "deep.png", "gray.png", "rgba.png"]


def test_huge_image_refused_before_decoding(onnx_model, tmp_path, capsys):
    assert infer_cpu(onnx_model, tmp_path / "out", PHOTOS[0], extra=("--max-pixels", "1000")) == 1
    err = capsys.readouterr().err
    assert "above the limit" in err and "--max-pixels" in err and str(PHOTOS[0]) in err


def test_folder_without_images_and_unwritable_output(onnx_model, tmp_path, capsys):
    (tmp_path / "empty_dir").mkdir()
    assert infer_cpu(onnx_model, tmp_path / "out", tmp_path / "empty_dir") == 1
    assert "folder has no images" in capsys.readouterr().err
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert infer_cpu(onnx_model, blocker / "out", PHOTOS[0]) == 2
    assert "cannot write to the output folder" in capsys.readouterr().err
