"""JPEGs decoded by the GPU's hardware JPEG decoder (nvImageCodec) inside the pipeline, against OpenCV's
decode on the CPU: labels ≥ 99.99% identical on the test photos and on 1024x2048 street scenes; files
the hardware decoder does not take go through the CPU in the same run, in input order, and every
failure is its own line, as with `--decoder cpu`."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from deploy_kit import Segmenter
from deploy_kit.cli import main
from deploy_kit.errors import ConfigError
from deploy_kit.images import EncodedImage
from deploy_kit.synthetic import SceneSpec, generate_scene

from ..conftest import PHOTOS

AGREEMENT = 0.9999


def _segmenter(model: Path, decoder: str, **kwargs) -> Segmenter:
    from deploy_kit.backends.onnxruntime.cuda import cuda_provider_available

    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a working CUDA provider")
    try:
        return Segmenter(model, backend="onnxruntime-cuda", decoder=decoder, **kwargs)
    except ConfigError as exc:
        if "no JPEG decoding on the GPU" not in exc.what:
            raise
        pytest.skip(exc.one_line())  # no nvImageCodec, or a GPU without a JPEG engine: the line says which


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("scenes")
    paths = []
    for index in range(6):
        path = folder / f"scene{index}.jpg"
        cv2.imwrite(str(path), generate_scene(7, index, SceneSpec(1024, 2048))[0], [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def _labels(model: Path, decoder: str, files: list[Path], batch: int) -> list[np.ndarray]:
    with _segmenter(model, decoder, max_batch=batch) as segmenter:
        assert segmenter.decoder == decoder, segmenter.decoder_reason
        if decoder == "gpu":
            assert all(isinstance(segmenter.load(path), EncodedImage) for path in files)  # none took the CPU
        items = list(segmenter.stream(files))
    assert [item.error for item in items] == [None] * len(files)
    return [item.labels for item in items]


@pytest.mark.parametrize("batch", [1, 4])
def test_gpu_decoded_labels_agree_with_cpu_decoded(gpu, gpu_model, scenes, batch):
    files = list(PHOTOS) + scenes
    on_gpu, on_cpu = _labels(gpu_model, "gpu", files, batch), _labels(gpu_model, "cpu", files, batch)
    for path, a, b in zip(files, on_gpu, on_cpu):
        assert a.shape == b.shape == cv2.imread(str(path)).shape[:2]
        assert np.mean(a == b) >= AGREEMENT, (path.name, float(np.mean(a == b)))


def _jpeg(image: np.ndarray, **pil_options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image[:, :, ::-1]).convert(pil_options.pop("mode", "RGB")).save(out, "JPEG", quality=90,
                                                                                    **pil_options)
    return out.getvalue()


def _mixed_folder(root: Path) -> list[str]:
    """Files in the order infer reads them (sorted): every kind the hardware decoder does or does not take."""
    photo = cv2.imread(str(PHOTOS[1]))
    rotated = Image.Exif()
    rotated[0x0112] = 6  # rotate 90° on display: cv2.imread turns the pixels
    baseline = _jpeg(photo)
    files = {
        "a_baseline.jpg": baseline,
        "b_progressive.jpg": _jpeg(photo, progressive=True),
        "c_png.png": cv2.imencode(".png", photo)[1].tobytes(),
        "d_grey.jpg": _jpeg(photo, mode="L"),
        "e_cmyk.jpg": _jpeg(photo, mode="CMYK"),
        "f_exif_rotated.jpg": _jpeg(photo, exif=rotated.tobytes()),
        "g_truncated.jpg": baseline[:len(baseline) // 2],
        "h_garbled.jpg": baseline[:700] + bytes(np.random.default_rng(0).integers(0, 256, 20_000, np.uint8))
        + b"\xff\xd9",
        "i_odd_size.jpg": _jpeg(cv2.imread(str(PHOTOS[2]))[:301, :457]),
        "j_baseline.jpg": _jpeg(cv2.imread(str(PHOTOS[0]))),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return sorted(files)


def _infer(folder: Path, out: Path, model: Path, decoder: str, capsys) -> tuple[int, list[str], list[str]]:
    code = main(["infer", str(folder), "-o", str(out), "--model", str(model), "--backend", "onnxruntime-cuda",
                 "--decoder", decoder, "--batch", "4", "--overlay"])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    return code, errors, [line for line in captured.out.splitlines() if line.startswith("backend: ")]


def test_files_the_hardware_decoder_does_not_take_go_through_the_cpu_in_the_same_run(gpu, gpu_model, tmp_path,
                                                                                       capsys):
    _segmenter(gpu_model, "gpu").close()  # skips with the reason where there is no hardware decoder
    folder = tmp_path / "in"
    folder.mkdir()
    names = _mixed_folder(folder)
    gpu_code, gpu_errors, gpu_header = _infer(folder, tmp_path / "gpu", gpu_model, "gpu", capsys)
    cpu_code, cpu_errors, _ = _infer(folder, tmp_path / "cpu", gpu_model, "cpu", capsys)
    assert "JPEG decoder: gpu" in gpu_header[0]
    assert gpu_code == cpu_code == 1  # some failed, each on its own line
    assert gpu_errors == cpu_errors and any("g_truncated.jpg" in line and "truncated" in line for line in gpu_errors)
    written = sorted(p.name for p in (tmp_path / "gpu").glob("*.png"))
    assert written == sorted(p.name for p in (tmp_path / "cpu").glob("*.png"))
    assert len(written) == len(names) - len(gpu_errors)
    for name in written:
        a, b = (np.asarray(Image.open(tmp_path / side / name)) for side in ("gpu", "cpu"))
        # a garbled scan decodes to garbage on either decoder, each its own garbage
        assert a.shape == b.shape and (np.mean(a == b) >= AGREEMENT or name == "h_garbled.png"), name
        assert (tmp_path / "gpu" / name.replace(".png", "_overlay.jpg")).stat().st_size > 0
    rotated = np.asarray(Image.open(tmp_path / "gpu" / "f_exif_rotated.png"))
    assert rotated.shape == cv2.imread(str(folder / "f_exif_rotated.jpg")).shape[:2]  # turned, as cv2 turns it


def test_a_jpeg_no_decoder_takes_fails_alone_in_its_batch(gpu, gpu_model):
    """A baseline JPEG whose Huffman table is bogus: its header reads well, so it goes to the GPU; the
    hardware decoder refuses it, OpenCV too, and that image alone fails; the rest of its batch is labelled."""
    good = _jpeg(cv2.imread(str(PHOTOS[1])))
    table = good.index(b"\xff\xc4")
    broken = good[:table + 5] + b"\xff" * 16 + good[table + 21:]  # code counts far above 256 codes
    with _segmenter(gpu_model, "gpu", max_batch=4) as segmenter:
        sources = [segmenter.load_bytes(data, name) for name, data in
                   (("good0", good), ("broken", broken), ("good1", good))]
        assert all(isinstance(source, EncodedImage) for source in sources)
        items = list(segmenter.stream(sources, decode=lambda source: source))
    assert [item.error is None for item in items] == [True, False, True]
    assert "broken" in items[1].error.one_line()
    np.testing.assert_array_equal(items[0].labels, items[2].labels)
