"""DLPack on the GPU, with PyTorch as the other framework: a preprocessed batch handed out as a
DeviceTensor is read by torch without a copy and freed when torch lets go; a torch CUDA tensor is read
by deploy-kit's postprocessing kernel through `borrow`, giving what host scores give."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from deploy_kit.paddleseg.preprocess import PreprocessSpec
from deploy_kit.runtime import dlpack
from deploy_kit.runtime.prepost import GpuPrePost

SPEC = PreprocessSpec(128, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), True, (), True)


@pytest.fixture
def torch():  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch", reason="needs PyTorch with CUDA (the other side of DLPack)")
    if not torch.cuda.is_available():
        pytest.skip("needs PyTorch built with CUDA")
    return torch


def test_a_device_tensor_is_read_by_torch_in_place_and_freed_when_torch_lets_go(gpu, torch, photos):
    with GpuPrePost() as kernels:
        expected = kernels.preprocess(photos[:2], SPEC, np.dtype(np.float32))
        tensor = kernels.preprocess_on_device(photos[:2], SPEC, np.dtype(np.float32))
        borrowed = torch.from_dlpack(tensor)
        assert borrowed.is_cuda and borrowed.data_ptr() == tensor.buffer.ptr and tuple(borrowed.shape) == expected.shape
        np.testing.assert_array_equal(borrowed.cpu().numpy(), expected)
        assert len(dlpack._exported) == 1
        del borrowed, tensor
        gc.collect()
        assert not dlpack._exported  # torch called the deleter: the device memory went back


def test_borrowed_torch_scores_give_what_host_scores_give(gpu, torch):
    scores = np.random.default_rng(0).normal(0, 3, (2, 5, 64, 128)).astype(np.float32)
    on_gpu = torch.from_numpy(scores).cuda()
    torch.cuda.synchronize()
    with GpuPrePost() as kernels:
        borrowed = dlpack.borrow(on_gpu.__dlpack__())
        assert borrowed.ptr == on_gpu.data_ptr() and borrowed.shape == scores.shape and borrowed.dtype == np.float32
        for got, want in zip(kernels.postprocess(borrowed, [(101, 203)] * 2), kernels.postprocess(scores, [(101, 203)] * 2)):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="not packed"):
        dlpack.borrow(on_gpu.transpose(2, 3).__dlpack__())
