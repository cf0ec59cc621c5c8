"""The exported Triton repository on the GPU machine: the bundled tritonserver runs the pre- and
post-processing models as GPU instances with deploy-kit's kernels (JPEGs decoded by the hardware JPEG
decoder, the engine's input handed on by DLPack), and the runtime model on ONNX Runtime CUDA, answering
exactly what the kernels and the runtime give in-process; a corrupt JPEG fails its own request alone."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from deploy_kit import Segmenter
from deploy_kit.artifact import Artifact
from deploy_kit.cli import main
from deploy_kit.images import encoded_image
from deploy_kit.paddleseg.postprocess import postprocess_cpu
from deploy_kit.paddleseg.preprocess import PreprocessSpec
from deploy_kit.runtime.prepost import GpuPrePost

from .. import tritonserver
from ..conftest import PHOTOS, require


def test_gpu_instances_answer_like_the_kernels_and_the_runtime(gpu, gpu_model, photos, tmp_path):
    require("pytriton", "tritonclient")
    import tritonclient.http as http

    from deploy_kit.backends.onnxruntime.cuda import cuda_provider_available

    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a working CUDA provider")
    assert main(["export-triton", "--model", str(gpu_model), "-o", str(tmp_path / "repo"), "--max-batch", "2"]) == 0
    ports = tritonserver.free_ports()
    models = ["seg", "seg_preprocess", "seg_postprocess"]
    process = tritonserver.start(tmp_path / "repo", tmp_path, ports, models)
    log = tmp_path / "tritonserver.log"
    try:
        tritonserver.wait_ready(process, ports[0], models, log)
        _skip_unless_the_stub_has_the_gpu_stack(log.read_text())
        client = http.InferenceServerClient(f"127.0.0.1:{ports[0]}")
        call = functools.partial(tritonserver.infer, client)

        spec = PreprocessSpec.from_metadata(Artifact.open(gpu_model).preprocessing)
        rng = np.random.default_rng(0)
        with GpuPrePost(decode_jpegs=True) as kernels, \
                Segmenter(gpu_model, backend="onnxruntime-cuda", max_batch=1) as runtime:
            assert kernels.jpeg_decoder is not None, kernels.jpeg_decoder_note  # the H200 has NVJPG engines
            for path, image in zip(PHOTOS, photos):
                jpeg = ("BYTES", np.array([[path.read_bytes()]], dtype=object))
                pre = call("seg_preprocess", image_bytes=jpeg)
                tensor = pre.as_numpy("input")
                np.testing.assert_array_equal(
                    tensor, kernels.preprocess([encoded_image(path.read_bytes(), path.name)], spec, tensor.dtype))
                decoded_on_cpu = kernels.preprocess([image], spec, tensor.dtype)
                assert np.abs(tensor - decoded_on_cpu).max() <= 1.01 / 255 / min(spec.std), path  # ≤ 1 grey level
                scores = rng.normal(0, 3, (1, *runtime.pipeline.output_image_shape)).astype(np.float32)
                hw = pre.as_numpy("original_hw")
                post = call("seg_postprocess", scores=("FP32", scores), original_hw=("INT32", hw))
                np.testing.assert_array_equal(post.as_numpy("labels")[0], postprocess_cpu(scores[0], tuple(hw[0])))
                np.testing.assert_array_equal(call("seg", image_bytes=jpeg).as_numpy("labels")[0],
                                              runtime.predict(image)[0])
        _a_corrupt_jpeg_fails_its_own_request_alone(ports[0])
        client.close()
    finally:
        code = tritonserver.stop(process)
    assert code == 0, log.read_text()[-3000:]
    assert "running on the CPU" not in log.read_text()  # every instance ran the kernels on the GPU


def _a_corrupt_jpeg_fails_its_own_request_alone(http_port: int) -> None:
    """Three requests at once (one dynamic batch where the queue delay gathers them), the middle one a
    baseline JPEG whose Huffman table is bogus (its header reads well, so it goes to the hardware decoder,
    which refuses it, and OpenCV too): it gets its error, the two others their tensors."""
    import tritonclient.http as http

    good = PHOTOS[0].read_bytes()
    table = good.index(b"\xff\xc4")
    bad = good[:table + 5] + b"\xff" * 16 + good[table + 21:]  # code counts far above 256 codes
    client = http.InferenceServerClient(f"127.0.0.1:{http_port}", concurrency=3)
    try:
        pending = []
        for data in (good, bad, good):
            request = http.InferInput("image_bytes", [1, 1], "BYTES")
            request.set_data_from_numpy(np.array([[data]], dtype=object))
            pending.append(client.async_infer("seg_preprocess", [request]))
        outcomes = []
        for call in pending:
            try:
                outcomes.append(call.get_result().as_numpy("input"))
            except Exception as exc:  # tritonclient raises InferenceServerException with the model's line
                outcomes.append(str(exc))
    finally:
        client.close()
    assert isinstance(outcomes[0], np.ndarray) and isinstance(outcomes[2], np.ndarray), outcomes
    np.testing.assert_array_equal(outcomes[0], outcomes[2])
    assert isinstance(outcomes[1], str) and "image_bytes[0]" in outcomes[1], outcomes[1]


def _skip_unless_the_stub_has_the_gpu_stack(log: str) -> None:
    """Triton's python-backend stub runs an isolated interpreter (it ignores PYTHONPATH): it sees only
    what is installed in its Python's site-packages. Each instance logs its JPEG decoder (and the runtime
    model its backend); where they are not the GPU's, the stub lacks nvImageCodec or onnxruntime-gpu."""
    lines = [line for line in log.splitlines() if "JPEG decoder:" in line]
    assert lines, log[-3000:]
    on_cpu = [line for line in lines if "hardware JPEG decoder" not in line and "JPEG decoder: gpu" not in line]
    if on_cpu:
        pytest.skip(f"the python-backend stub's Python has no GPU JPEG decoder or CUDA ONNX Runtime: {on_cpu[0][-200:]}")
