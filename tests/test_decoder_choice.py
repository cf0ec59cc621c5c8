"""`--decoder auto|cpu|gpu` where there is no GPU (as in CI): auto picks OpenCV and says why, a named
`gpu` is refused with one line and exit 2, never replaced; which files would go to the GPU's hardware
JPEG decoder is read from their headers alone, for any bytes. (tests/gpu/test_gpu_decoder.py runs the
hardware decoder itself.)"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from deploy_kit import Segmenter
from deploy_kit.cli import main
from deploy_kit.errors import ConfigError
from deploy_kit.images import encoded_image, hardware_jpeg

from .conftest import PHOTOS


def _jpeg(mode: str = "RGB", **options) -> bytes:
    out = io.BytesIO()
    Image.open(PHOTOS[0]).convert(mode).save(out, "JPEG", quality=90, **options)
    return out.getvalue()


def test_auto_picks_opencv_on_the_cpu_and_gpu_is_refused(onnx_model):
    with Segmenter(onnx_model, backend="onnxruntime-cpu") as segmenter:
        assert segmenter.decoder == "cpu" and "runs on the CPU" in segmenter.decoder_reason
        loaded = segmenter.load(PHOTOS[0])
        np.testing.assert_array_equal(loaded, cv2.imread(str(PHOTOS[0])))  # decoded here, as PaddleSeg reads it
    with pytest.raises(ConfigError, match="--decoder gpu needs a backend on the GPU"):
        Segmenter(onnx_model, backend="onnxruntime-cpu", decoder="gpu")
    with pytest.raises(ConfigError, match="unknown decoder"):
        Segmenter(onnx_model, backend="onnxruntime-cpu", decoder="nvjpeg")


def test_infer_with_a_gpu_decoder_it_cannot_have_is_one_line_and_exit_2(onnx_model, tmp_path, capsys):
    code = main(["infer", str(PHOTOS[0]), "--model", str(onnx_model), "--backend", "onnxruntime-cpu",
                 "--decoder", "gpu", "-o", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--decoder gpu" in err[0] and "Hint: use --decoder auto or cpu" in err[0]
    assert main(["infer", str(PHOTOS[0]), "--model", str(onnx_model), "--backend", "onnxruntime-cpu",
                 "-o", str(tmp_path)]) == 0
    assert "JPEG decoder: cpu (OpenCV: onnxruntime-cpu runs on the CPU)" in capsys.readouterr().out


def test_what_goes_to_the_hardware_decoder_is_read_from_the_header():
    rotated = Image.Exif()
    rotated[0x0112] = 6
    assert hardware_jpeg(_jpeg()) and hardware_jpeg(_jpeg("L"))
    assert hardware_jpeg(_jpeg(exif=Image.Exif().tobytes()))  # EXIF without a rotation
    for refused in (_jpeg(progressive=True), _jpeg("CMYK"), _jpeg(exif=rotated.tobytes()),
                    cv2.imencode(".png", cv2.imread(str(PHOTOS[0])))[1].tobytes()):
        assert not hardware_jpeg(refused)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_the_hardware_decoder_check_takes_any_bytes(tail):
    for data in (tail, b"\xff\xd8\xff" + tail, _PREFIX + tail):
        assert hardware_jpeg(data) in (True, False)


_PREFIX = _jpeg()[:400]  # a real JPEG's first segments, then anything


def test_an_encoded_image_is_checked_before_any_decoder(onnx_model):
    data = PHOTOS[0].read_bytes()
    image = encoded_image(data, "photo.jpg")
    assert image.shape == cv2.imread(str(PHOTOS[0])).shape
    with pytest.raises(Exception, match="truncated"):
        encoded_image(data[:len(data) // 2], "half.jpg")
    with pytest.raises(Exception, match="above the limit"):
        encoded_image(data, "photo.jpg", max_pixels=100)
    with Segmenter(onnx_model, backend="onnxruntime-cpu") as segmenter:  # the CPU session decodes it itself
        np.testing.assert_array_equal(segmenter.predict_loaded([image])[0],
                                      segmenter.predict(cv2.imread(str(PHOTOS[0])))[0])
