"""The exported Triton repository on the GPU machine: the bundled tritonserver runs the pre- and
post-processing models as GPU instances with deploy-kit's kernels, and the runtime model on ONNX
Runtime CUDA, answering exactly what the kernels and the runtime give in-process."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from deploy_kit import Segmenter
from deploy_kit.artifact import Artifact
from deploy_kit.cli import main
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
        client = http.InferenceServerClient(f"127.0.0.1:{ports[0]}")
        call = functools.partial(tritonserver.infer, client)

        spec = PreprocessSpec.from_metadata(Artifact.open(gpu_model).preprocessing)
        rng = np.random.default_rng(0)
        with GpuPrePost() as kernels, Segmenter(gpu_model, backend="onnxruntime-cuda", max_batch=1) as runtime:
            for path, image in zip(PHOTOS, photos):
                jpeg = ("BYTES", np.array([[path.read_bytes()]], dtype=object))
                pre = call("seg_preprocess", image_bytes=jpeg)
                tensor = pre.as_numpy("input")
                np.testing.assert_array_equal(tensor, kernels.preprocess([image], spec, tensor.dtype))
                scores = rng.normal(0, 3, (1, *runtime.pipeline.output_image_shape)).astype(np.float32)
                hw = pre.as_numpy("original_hw")
                post = call("seg_postprocess", scores=("FP32", scores), original_hw=("INT32", hw))
                np.testing.assert_array_equal(post.as_numpy("labels")[0], postprocess_cpu(scores[0], tuple(hw[0])))
                np.testing.assert_array_equal(call("seg", image_bytes=jpeg).as_numpy("labels")[0],
                                              runtime.predict(image)[0])
        client.close()
    finally:
        code = tritonserver.stop(process)
    assert code == 0, log.read_text()[-3000:]
    assert "running on the CPU" not in log.read_text()  # every instance ran the kernels on the GPU
