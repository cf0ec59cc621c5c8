"""INT64 narrowing on tiny graphs built with onnx.helper, checked against ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from deploy_kit.convert.optimize import compare_on_onnxruntime, narrow_int64_initializers


def _graph(tmp_path: Path) -> tuple[onnx.ModelProto, Path]:
    i64 = lambda name, values: numpy_helper.from_array(np.array(values, dtype=np.int64), name)  # noqa: E731
    nodes = [
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["s"], name="slice"),
        helper.make_node("Reshape", ["s", "shape"], ["r"], name="reshape"),
        helper.make_node("Gather", ["r", "idx"], ["y"], axis=1, name="gather"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [i64("starts", [1]), i64("ends", [np.iinfo(np.int64).max]), i64("axes", [2]), i64("shape", [0, -1]),
         i64("idx", [0, 3, 5]), i64("unused_big", [2**40])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    path = tmp_path / "ref.onnx"
    onnx.save(model, str(path))
    return model, path


def test_narrowing_retypes_casts_and_clamps_without_changing_outputs(tmp_path):
    model, reference = _graph(tmp_path)
    narrowed, casts = narrow_int64_initializers(model)
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert types["starts"] == types["axes"] == types["idx"] == TensorProto.INT32
    assert types["ends"] == TensorProto.INT32  # INT64_MAX clamped: Slice clamps to the axis anyway
    assert "shape" not in types and types["shape__int32"] == TensorProto.INT32  # Reshape needs int64
    assert [n.op_type for n in model.graph.node][0] == "Cast"
    assert types["unused_big"] == TensorProto.INT64  # does not fit, so kept
    assert (narrowed, casts) == (5, 1)
    onnx.checker.check_model(model, full_check=True)
    candidate = tmp_path / "narrow.onnx"
    onnx.save(model, str(candidate))
    assert compare_on_onnxruntime(reference, candidate, [(3, 4, 6), (1, 4, 6)]) == (0.0, {"y": (3, 3)})


def test_narrowing_keeps_the_index_inputs_of_one_node_one_type(tmp_path):
    """A Slice `starts` shared with a Concat of a Shape (INT64 there) keeps every Slice index input INT64:
    mixed INT32/INT64 on one Slice fails onnx.checker (SegFormer-B0 exported with dynamic H/W did)."""
    i64 = lambda name, values: numpy_helper.from_array(np.array(values, dtype=np.int64), name)  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Concat", ["shape", "starts"], ["joined"], axis=0),
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"]),
        helper.make_node("Cast", ["joined"], ["z"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, "w"]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [4])],
        [i64("starts", [1]), i64("ends", [3]), i64("axes", [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    reference = tmp_path / "ref.onnx"
    onnx.save(model, str(reference))
    narrow_int64_initializers(model)
    onnx.checker.check_model(model, full_check=True)
    slice_node = next(n for n in model.graph.node if n.op_type == "Slice")
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert {types.get(name, TensorProto.INT64) for name in slice_node.input[1:]} == {TensorProto.INT64}
    candidate = tmp_path / "narrow.onnx"
    onnx.save(model, str(candidate))
    assert compare_on_onnxruntime(reference, candidate, [(2, 4, 5), (1, 4, 9)])[0] == 0.0


def test_onnxruntime_cpu_threads_follow_omp_num_threads(monkeypatch):
    """Ray gives a CPU actor OMP_NUM_THREADS = its CPUs; ONNX Runtime would otherwise take every core."""
    from deploy_kit.backends.onnxruntime.cpu import quiet_session_options

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert quiet_session_options().intra_op_num_threads == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert quiet_session_options().intra_op_num_threads == 0  # ONNX Runtime's own choice: the machine's cores
