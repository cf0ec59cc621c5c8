"""Hostile and careless input: decompression bombs, colliding and self-overwriting outputs, palette
labels, corrupt parameter files, wrong arrays, and a CLI that explains itself. Each of these failed
once; arbitrary bytes are thrown at the parsers by hypothesis."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from deploy_kit import Segmenter
from deploy_kit.cli import build_parser, main
from deploy_kit.errors import ConfigError
from deploy_kit.image_header import HeaderError, image_size
from deploy_kit.paddleseg.pdiparams import scan

from .conftest import PHOTOS, infer_cpu, require


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _bilevel_png_bomb(side: int) -> bytes:
    """A 1-bit grey PNG of side x side zero pixels: tiny on disk, side² bytes once decoded."""
    squeeze = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    idat = b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def test_decompression_bombs_are_refused_from_the_header_and_the_rest_go_on(onnx_model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(_bilevel_png_bomb(20000))
    assert (folder / "bomb.png").stat().st_size < 200_000
    huge = bytearray(_bilevel_png_bomb(8))
    huge[16:24] = struct.pack(">II", 100_000, 100_000)  # a 10-gigapixel header on a tiny file
    (folder / "huge.png").write_bytes(bytes(huge))
    shutil.copy(PHOTOS[0], folder / "photo.jpg")
    code = infer_cpu(onnx_model, tmp_path / "out", folder, extra=("--max-pixels", "1000000"))
    err = capsys.readouterr().err
    assert code == 1
    assert "bomb.png: image is 20000x20000 = 400,000,000 pixels, above the limit" in err
    assert "huge.png: image is 100000x100000" in err and "--max-pixels" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo.png"]


def test_outputs_mirror_the_inputs_and_never_collide(onnx_model, tmp_path, capsys):
    root = tmp_path / "in"
    for sub, name in (("d1", "a.jpg"), ("d1", "a.png"), ("d2", "a.jpg")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        Image.open(PHOTOS[1]).save(root / sub / name)
    assert infer_cpu(onnx_model, tmp_path / "out", root) == 0
    out = capsys.readouterr()
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["d1/a-2.png", "d1/a.png", "d2/a.png"]
    assert "3/3 images segmented" in out.out and "is taken by" in out.err
    assert infer_cpu(onnx_model, tmp_path / "flat", root / "d1" / "a.jpg", root / "d2" / "a.jpg") == 0
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["a-2.png", "a.png"]
    assert "warning: " in capsys.readouterr().err


def test_never_writes_onto_an_input(onnx_model, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(PHOTOS[0], folder / "street.jpg")
    Image.open(PHOTOS[1]).save(folder / "photo.png")
    before = (folder / "photo.png").read_bytes()
    monkeypatch.chdir(folder)
    code = main(["infer", ".", "-o", ".", "--model", str(onnx_model), "--backend", "onnxruntime-cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert (folder / "photo.png").read_bytes() == before
    assert len(err) == 1 and "photo.png: its output would overwrite an input image" in err[0] and "-o" in err[0]
    assert Image.open(folder / "street.png").mode == "P"


def test_eval_reads_palette_labels_as_class_ids(onnx_model, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for photo in PHOTOS[:3]:
        shutil.copy(photo, images / photo.name)
    assert infer_cpu(onnx_model, tmp_path / "labels", images) == 0
    assert main(["eval", str(images), str(tmp_path / "labels"), "--model", str(onnx_model), "--backend",
                 "onnxruntime-cpu", "-o", str(tmp_path / "eval.json")]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["pixel_accuracy"] == 1.0 and len(report["class_iou"]) == 5  # the model's 5 output channels
    wrong = tmp_path / "labels" / f"{PHOTOS[0].stem}.png"
    Image.fromarray(np.full((8, 8), 9, np.uint8), mode="L").save(wrong)
    capsys.readouterr()
    assert main(["eval", str(images), str(tmp_path / "labels"), "--model", str(onnx_model), "--backend",
                 "onnxruntime-cpu", "-o", str(tmp_path / "eval.json")]) == 2
    err = capsys.readouterr().err
    assert str(wrong) in err and "class id 9, the model has 5 classes" in err


def test_random_bytes_as_parameters_are_one_line_and_exit_2(model_copy, tmp_path, capsys):
    model = model_copy()
    (model / "model.pdiparams").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    assert main(["convert", str(model), "-o", str(tmp_path / "out"), "--onnx-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "model.pdiparams" in err


def test_predict_takes_one_image_or_a_sequence_and_rejects_the_rest(onnx_model):
    image = np.zeros((40, 60, 3), np.uint8)
    with Segmenter(onnx_model, backend="onnxruntime-cpu") as segmenter:
        one = segmenter.predict(image)
        assert len(one) == 1 and one[0].shape == (40, 60)
        assert [l.shape for l in segmenter.predict((image, image))] == [(40, 60)] * 2
        for bad, needle in ((image.astype(np.float32), "float32"), (image[:, :, 0], "shape (40, 60)"),
                            (np.zeros((40, 60, 4), np.uint8), "(40, 60, 4)"), ([image, "x"], "image 1 is a str"),
                            (np.zeros((2, 40, 60, 3), np.uint8), "(2, 40, 60, 3)")):
            with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
                segmenter.predict(bad)


def test_cli_explains_itself(capsys):
    assert main([]) == 0
    assert "deploy-kit convert" in capsys.readouterr().out
    parser = build_parser()
    for name, command in parser._subparsers._group_actions[0].choices.items():  # type: ignore[union-attr]
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"
        text = command.format_help()
        for action in command._actions:
            if action.option_strings and action.default not in (None, False) and action.dest not in ("help", "verbose"):
                assert f"(default:{action.default})" in "".join(text.split()), (name, action.dest)
    assert build_parser().parse_args(["doctor", "-v"]).verbose is True
    assert build_parser().parse_args(["-v", "doctor"]).verbose is True


def test_piped_doctor_is_whole_and_a_closed_pipe_is_quiet():
    command = [sys.executable, "-m", "deploy_kit", "doctor"]
    table = subprocess.run(command, capture_output=True, text=True)
    assert max(len(line) for line in table.stdout.splitlines()) > 80 and "…" not in table.stdout
    closed = subprocess.run(f"{sys.executable} -m deploy_kit doctor --json | head -c 10", shell=True,
                            capture_output=True, text=True)
    assert "Traceback" not in closed.stderr and "BrokenPipe" not in closed.stderr


def test_benchmark_without_paddle_or_matplotlib(onnx_model, tmp_path):
    assert build_parser().parse_args(["benchmark", "--model", "m"]).out == Path("bench-results")
    hide = "import sys; sys.modules.update(paddle=None, matplotlib=None); from deploy_kit.cli import main; " \
           "sys.exit(main(sys.argv[1:]))"
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(PHOTOS[0], images / "a.jpg")
    result = subprocess.run([sys.executable, "-c", hide, "benchmark", "--model", str(onnx_model), "--images",
                             str(images), "--backend", "onnxruntime-cpu", "--batch", "1", "--iterations", "2",
                             "--warmup", "0", "--no-baseline", "--out", str(tmp_path / "results")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "no Paddle Inference comparison" in result.stdout and "no chart" in result.stdout
    assert sorted(p.suffix for p in (tmp_path / "results").iterdir()) == [".csv", ".json"]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_header_reader_takes_any_bytes(data):
    try:
        width, height = image_size(data)
    except HeaderError:
        return
    assert width > 0 and height > 0


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*",
                        b"II+\x00", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"RIFF\x00\x00\x00\x00WEBPVP8L"]),
       st.binary(max_size=256))
def test_header_reader_takes_any_bytes_after_a_real_signature(signature, tail):
    test_header_reader_takes_any_bytes.hypothesis.inner_test(signature + tail)  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_parameter_scan_takes_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("pdiparams") / "model.pdiparams"
    path.write_bytes(b"\x00\x00\x00\x00" + b"\x00" * 8 + data)  # past the version and LoD count sometimes
    for contents in (data, path.read_bytes()):
        path.write_bytes(contents)
        try:
            records = scan(path)
        except ConfigError:
            continue
        assert all(r.data_offset + r.nbytes <= len(contents) for r in records)


def test_header_reader_agrees_with_pil_on_real_files(tmp_path):
    photo = Image.open(PHOTOS[0]).convert("RGB")
    for suffix, options in ((".png", {}), (".jpg", {}), (".bmp", {}), (".tif", {}), (".webp", {"lossless": True}),
                            (".webp", {"quality": 80})):
        path = tmp_path / f"x{suffix}"
        photo.save(path, **options)
        assert image_size(path.read_bytes()) == photo.size, suffix


def test_a_clean_run_is_quiet(paddle_model, onnx_model, tmp_path, capsys, caplog, monkeypatch):
    """No TensorRT parser quirk, Paddle ccache note or rate-of-nothing reaches a user on a clean run."""
    import logging

    require("tensorrt_rtx")
    with caplog.at_level(logging.WARNING):
        assert main(["convert", str(paddle_model("argmax")), "-o", str(tmp_path / "build")]) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    paddle = subprocess.run([sys.executable, "-c", "import deploy_kit.paddleseg, paddle"], capture_output=True, text=True)
    assert paddle.returncode == 0 and "ccache" not in paddle.stderr
    (tmp_path / "empty.png").write_bytes(b"")
    capsys.readouterr()
    assert infer_cpu(onnx_model, tmp_path / "out", tmp_path / "empty.png") == 1
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("0/1 images segmented") and "img/s" not in summary


def test_first_use_of_the_demo_model_says_what_it_unpacks(tmp_path, monkeypatch, capsys):
    from deploy_kit.paddleseg.demo import restore_default_model

    monkeypatch.setenv("DEPLOY_KIT_CACHE", str(tmp_path / "cache"))
    target = restore_default_model()
    said = capsys.readouterr().err
    assert "restoring the demo model" in said and " MB packed" in said and str(target) in said
    restore_default_model()
    assert capsys.readouterr().err == ""


def test_help_imports_no_subcommand():
    """`deploy-kit --help` lists the subcommands from their docstrings without importing them (or OpenCV,
    ONNX, NumPy): it starts in a few tens of milliseconds."""
    probe = ("import sys\nfrom deploy_kit.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('cv2', 'onnx', 'numpy', 'deploy_kit.segmenter') if m in sys.modules))")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "deploy-kit infer" in ran.stdout and ran.stdout.splitlines()[-1] == "[]", ran.stdout[-500:] + ran.stderr
