"""Stage 2: make the exported ONNX TensorRT-friendly and prove it still computes the same thing.

onnxslim does shape inference, constant folding and Conv+BatchNorm folding; this module then narrows
INT64 constants to INT32 (TensorRT has no native INT64 weights and warns about every one), checks the
graph with `onnx.checker`, and compares it with the exported graph on ONNX Runtime before it is kept.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import OptimizeError
from ..fileio import atomic_output

_INT32_MIN, _INT32_MAX = np.iinfo(np.int32).min, np.iinfo(np.int32).max
# Inputs whose ONNX type constraint admits int32 as well as int64 (Tind); others need a Cast.
_INT32_INPUTS: dict[str, set[int]] = {
    "Slice": {1, 2, 3, 4}, "Gather": {1}, "GatherElements": {1}, "GatherND": {1},
    "ScatterElements": {1}, "ScatterND": {1}, "OneHot": {1},
}
# Slice clamps starts/ends to the axis, so INT64_MAX ("to the end") means the same as INT32_MAX.
_CLAMPABLE = {("Slice", 1), ("Slice", 2)}
LOGIT_TOLERANCE = 1e-4  # relative to the largest |logit|


def optimize_onnx(src: Path, dst: Path, check_shapes: list[tuple[int, ...]],
                  static_outputs: bool = True) -> dict[str, Any]:
    """Writes the TensorRT-friendly graph of `src` to `dst`, proven equal to it on inputs of
    `check_shapes`, and returns what changed. `static_outputs` writes the measured output H and W into
    the graph (for fixed-size models)."""
    import onnxslim

    model = onnx.load(str(src))
    before = collections.Counter(n.op_type for n in model.graph.node)
    try:
        model = onnxslim.slim(model)
    except Exception as exc:  # onnxslim raises plain exceptions on graphs it cannot handle
        raise OptimizeError("onnxslim could not simplify the graph", path=src, note=str(exc).splitlines()[0],
                            hint="report the model; --force after fixing re-runs only this stage") from None
    narrowed, casts = narrow_int64_initializers(model)
    check_graph(model, src)
    with atomic_output(dst) as tmp:
        onnx.save(model, str(tmp))
        max_diff, shapes = compare_on_onnxruntime(src, tmp, check_shapes)
        if static_outputs and _make_output_dims_static(model, shapes):
            check_graph(model, src)
            onnx.save(model, str(tmp))
    after = collections.Counter(n.op_type for n in model.graph.node)
    return {
        "nodes_before": sum(before.values()),
        "nodes_after": sum(after.values()),
        "removed_ops": {op: before[op] - after.get(op, 0) for op in before if before[op] > after.get(op, 0)},
        "int64_narrowed": narrowed,
        "int64_casts_inserted": casts,
        "int64_initializers_left": [i.name for i in model.graph.initializer if i.data_type == TensorProto.INT64],
        "max_relative_difference": max_diff,
        "num_classes": class_count(model),
    }


def class_count(model: onnx.ModelProto) -> int | None:
    """The model's score channels: the first output's channel dim, or the input of its ArgMax."""
    typed = {v.name: v for v in (*model.graph.value_info, *model.graph.output)}
    argmax = next((n for n in model.graph.node if n.op_type == "ArgMax"), None)
    name, axis = (argmax.input[0], 1) if argmax is not None else (model.graph.output[0].name, 1)
    value = typed.get(name)
    dims = value.type.tensor_type.shape.dim if value is not None else []
    return int(dims[axis].dim_value) if len(dims) > axis and dims[axis].dim_value > 1 else None


def narrow_int64_initializers(model: onnx.ModelProto) -> tuple[int, int]:
    """Stores every INT64 initializer whose values fit as INT32.

    Where a consumer's type constraint allows int32 the initializer is retyped in place; elsewhere
    (Reshape shapes, Resize sizes, Concat with a Shape output) an int32 initializer feeds a Cast back
    to int64, which TensorRT runs as a cheap shape-tensor cast instead of warning about INT64 weights.
    Returns (initializers narrowed, casts inserted).
    """
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = collections.defaultdict(list)
    for node in model.graph.node:
        for slot, name in enumerate(node.input):
            consumers[name].append((node, slot))
    outputs = {o.name for o in model.graph.output}
    fitting = {}
    for init in model.graph.initializer:
        if init.data_type != TensorProto.INT64 or init.name in outputs:
            continue
        uses = consumers.get(init.name, [])
        values = numpy_helper.to_array(init)
        if uses and all((n.op_type, s) in _CLAMPABLE for n, s in uses):
            values = np.clip(values, _INT32_MIN, _INT32_MAX)
        if not values.size or (values.min() >= _INT32_MIN and values.max() <= _INT32_MAX):
            fitting[init.name] = values
    retyped = _retypable_in_place(model, consumers, set(fitting))
    narrowed = casts = 0
    new_nodes = []
    for init in model.graph.initializer:
        if init.name not in fitting:
            continue
        values = fitting[init.name]
        if init.name in retyped:
            init.CopyFrom(numpy_helper.from_array(values.astype(np.int32), init.name))
        else:
            narrow_name = f"{init.name}__int32"
            model.graph.initializer.append(numpy_helper.from_array(values.astype(np.int32), narrow_name))
            new_nodes.append(helper.make_node("Cast", [narrow_name], [init.name], to=TensorProto.INT64,
                                              name=f"{init.name}__to_int64"))
            casts += 1
        narrowed += 1
    # Initializers that became Cast outputs must go; nodes must stay topologically sorted.
    cast_outputs = {n.output[0] for n in new_nodes}
    kept = [i for i in model.graph.initializer if i.name not in cast_outputs]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    nodes = new_nodes + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return narrowed, casts


def _retypable_in_place(model: onnx.ModelProto, consumers: dict[str, list[tuple[onnx.NodeProto, int]]],
                        fitting: set[str]) -> set[str]:
    """The initializers that can become INT32 where they are: every use accepts int32, and every other
    index input of each node using it becomes INT32 too (Slice's starts, ends, axes and steps share one
    type, so one left INT64 keeps them all INT64)."""
    retyped = {name for name in fitting
               if all(slot in _INT32_INPUTS.get(node.op_type, set()) for node, slot in consumers[name])}
    changed = True
    while changed:
        changed = False
        for node in model.graph.node:
            group = [node.input[s] for s in sorted(_INT32_INPUTS.get(node.op_type, set())) if s < len(node.input)]
            group = [name for name in group if name]
            if any(name in retyped for name in group) and not all(name in retyped for name in group):
                retyped -= set(group)
                changed = True
    return retyped


def check_graph(model: onnx.ModelProto, src: Path, what: str = "optimized graph") -> None:
    """onnx.checker with full shape checks; a failure is an OptimizeError naming the source graph."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OptimizeError(f"{what} fails onnx.checker", path=src, note=str(exc).splitlines()[0]) from None


def _make_output_dims_static(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> bool:
    """Writes the measured non-batch output dims into the graph (paddle2onnx leaves H and W symbolic),
    so executors can size their output buffers from the model alone."""
    changed = False
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        for index, dim in enumerate(dims):
            if index > 0 and not dim.HasField("dim_value") and output.name in shapes:
                dim.dim_value = shapes[output.name][index]
                changed = True
    return changed


def compare_on_onnxruntime(reference: Path, candidate: Path,
                           input_shapes: list[tuple[int, ...]]) -> tuple[float, dict[str, tuple[int, ...]]]:
    """Runs both graphs on the same seeded inputs of each shape; returns the largest relative output
    difference and the output shapes of the first.

    Raises OptimizeError if float outputs differ by more than LOGIT_TOLERANCE of their range or
    integer outputs (labels) differ at all.
    """
    import onnxruntime as ort

    ref = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"])
    cand = ort.InferenceSession(str(candidate), providers=["CPUExecutionProvider"])
    worst, shapes = 0.0, dict[str, tuple[int, ...]]()
    names = [o.name for o in ref.get_outputs()]
    for input_shape in input_shapes:
        feed = {t.name: np.random.default_rng(0).uniform(-1, 1, input_shape).astype(np.float32) for t in ref.get_inputs()}
        for name, want, got in zip(names, ref.run(None, feed), cand.run(None, feed)):
            worst = max(worst, _compare_output(name, want, got, candidate))
            shapes.setdefault(name, tuple(want.shape))
    return worst, shapes


def _compare_output(name: str, want: np.ndarray, got: np.ndarray, candidate: Path) -> float:
    if want.shape != got.shape:
        raise OptimizeError(f"output {name} changed shape {want.shape} -> {got.shape}", path=candidate)
    if np.issubdtype(want.dtype, np.floating):
        diff = float(np.abs(want.astype(np.float64) - got).max() / max(1.0, float(np.abs(want).max())))
    else:
        diff = float(np.mean(want != got))
    if diff > (LOGIT_TOLERANCE if np.issubdtype(want.dtype, np.floating) else 0.0):
        raise OptimizeError(f"optimized graph changed output {name}", path=candidate,
                            note=f"relative difference {diff:.3g}", hint="report the model")
    return diff
