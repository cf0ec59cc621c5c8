"""Shared fixtures: a real PP-LiteSeg-T built with paddleseg and exported with Paddle, per output_op.

The models are built once per test session (about 15 s each on 2 cores) with seeded weights, so a
failure reproduces. Tests that need Paddle, paddleseg or TensorRT-RTX skip naming the missing package.
"""

from __future__ import annotations

import importlib.util
import shutil
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

PHOTOS = sorted((Path(__file__).parent / "data" / "photos").glob("*.jpg"))
MODEL_HW = (256, 512)


def require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (pip install -e '.[dev]')")


def _export_random_pp_liteseg(save_dir: Path, output_op: str, input_shape: list, transforms: list) -> Path:
    require("paddle", "paddleseg", "paddle2onnx")
    import paddle

    from deploy_kit.paddleseg.export import build_pp_liteseg_t, export_inference_model

    paddle.seed(7)
    model = build_pp_liteseg_t(num_classes=5)
    # Random BatchNorm statistics, so folding them into the convolutions is really exercised.
    for name, tensor in model.state_dict().items():
        if name.endswith("_mean") or name.endswith("_variance"):
            values = np.random.default_rng(zlib.crc32(name.encode())).uniform(0.1 if "var" in name else -0.2, 0.6,
                                                                            tensor.shape)
            tensor.set_value(values.astype("float32"))
    return export_inference_model(model, save_dir, input_shape, transforms, output_op)


@pytest.fixture(scope="session")
def paddle_model(tmp_path_factory: pytest.TempPathFactory):
    """factory(output_op) -> a PaddleSeg inference folder (fixed 256x512 input, Resize + Normalize)."""
    made: dict[str, Path] = {}

    def make(output_op: str = "argmax") -> Path:
        if output_op not in made:
            folder = tmp_path_factory.mktemp(f"pp_liteseg_{output_op}")
            made[output_op] = _export_random_pp_liteseg(
                folder, output_op, [None, 3, *MODEL_HW],
                [{"type": "Resize", "target_size": [MODEL_HW[1], MODEL_HW[0]]}, {"type": "Normalize"}])
        return made[output_op]

    return make


@pytest.fixture(scope="session")
def onnx_only(paddle_model, tmp_path_factory: pytest.TempPathFactory):
    """factory(output_op) -> `convert --onnx-only` of that model, converted once per session; tests only
    read it (they write their outputs elsewhere)."""
    from deploy_kit.cli import main

    made: dict[str, Path] = {}

    def get(output_op: str = "none") -> Path:
        if output_op not in made:
            out = tmp_path_factory.mktemp(f"onnx_{output_op}")
            assert main(["convert", str(paddle_model(output_op)), "-o", str(out), "--onnx-only"]) == 0
            made[output_op] = out
        return made[output_op]

    return get


@pytest.fixture(scope="session")
def onnx_model(onnx_only) -> Path:
    """The model that ends in scores (no output op), `convert --onnx-only`ed once per session."""
    return onnx_only("none")


def infer_cpu(model: Path, out: Path, *inputs: object, extra: tuple[str, ...] = ()) -> int:
    """`deploy-kit infer INPUTS --model MODEL -o OUT` on ONNX Runtime CPU; its exit code."""
    from deploy_kit.cli import main

    return main(["infer", *(str(i) for i in inputs), "--model", str(model), "-o", str(out),
                 "--backend", "onnxruntime-cpu", *extra])


@pytest.fixture
def model_copy(paddle_model, tmp_path: Path):
    """factory(output_op) -> a private copy of the model folder that a test may damage."""
    def make(output_op: str = "argmax") -> Path:
        dst = tmp_path / f"model_{output_op}"
        shutil.copytree(paddle_model(output_op), dst)
        return dst

    return make


@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in PHOTOS]
    assert images and all(i is not None for i in images), "tests/data/photos is missing"
    return images
