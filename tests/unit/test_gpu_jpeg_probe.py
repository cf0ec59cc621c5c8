"""The nvImageCodec probe behind GPU overlay encoding: without nvImageCodec (as in CI) it answers None
and the pipeline downloads the blended pixels for OpenCV to encode on the CPU."""

from __future__ import annotations

import sys

from deploy_kit.gpu_jpeg import gpu_jpeg_encoder


def test_without_nvimagecodec_the_probe_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", None)  # an import of it now fails, installed or not
    assert gpu_jpeg_encoder(0) is None
