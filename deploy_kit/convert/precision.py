"""Stage 2b: reduced precision that lives in the ONNX graph, so it means the same on weakly typed
TensorRT (8.6, 10), strongly typed TensorRT (11) and TensorRT-RTX, and an accuracy report against FP32.

FP16: onnxconverter-common's converter with numerically sensitive ops kept in FP32. INT8: ONNX Runtime's
static quantization to explicit, symmetric Q/DQ nodes (what TensorRT's explicit quantization takes),
calibrated on real images through the inference preprocessing, with a reusable calibration cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import onnx

from ..backends.onnxruntime.cpu import OnnxRuntimeCpuExecutor
from ..errors import ConfigError, OptimizeError
from ..evaluate import Confusion
from ..fileio import atomic_output, sha256_file, sha256_json, write_json_atomic
from ..images import expand_inputs, read_image, read_label
from ..paddleseg.postprocess import labels_from_output
from ..paddleseg.preprocess import PreprocessSpec, preprocess_cpu
from ..synthetic import EVAL_SEED, generate_scene
from .optimize import check_graph

# Ops kept in FP32 in the FP16 graph: reductions and normalisations lose range or precision in half,
# Resize keeps its coordinate arithmetic exact, and the final argmax/softmax decides the labels.
FP16_KEEP_FP32 = ("ReduceMean", "ReduceMax", "ReduceSum", "ReduceL2", "GlobalAveragePool",
                  "BatchNormalization", "InstanceNormalization", "LayerNormalization",
                  "Softmax", "ArgMax", "TopK")
# Largest mIoU loss (in points) against FP32 before convert refuses the graph.
DEFAULT_MAX_MIOU_LOSS = {"fp16": 0.3, "int8": 1.5}
# ONNX Runtime's quantizer asks for its own pre-processing; that runs ORT's graph optimizer, which fuses
# ORT-only ops TensorRT cannot parse. The graph is already shape-inferred and simplified by onnxslim.
PREPROCESS_ADVICE = "Please consider"  # "... to run pre-processing" / "... pre-processing"


@dataclass(frozen=True)
class AccuracyData:
    """Images for calibration and for the accuracy check, with labels when they exist."""

    images: list[np.ndarray]
    labels: list[np.ndarray] | None
    source: str


def load_accuracy_data(images: Path | None, labels: Path | None, limit: int | None, what: str) -> AccuracyData:
    """Images of a folder (sorted, at most `limit`), with label PNGs of the same stems if `labels`."""
    if images is None:
        return AccuracyData([], None, "none")
    paths, errors = expand_inputs([str(images)])
    if errors:
        raise ConfigError(f"no usable {what}", path=images, note=errors[0].what, hint="give a folder of images")
    paths = paths[:limit]
    loaded = [read_image(p) for p in paths]
    label_maps = [read_label(labels, p) for p in paths] if labels is not None else None
    return AccuracyData(loaded, label_maps, str(images))


def synthetic_accuracy_data(count: int = 24) -> AccuracyData:
    """Generated street scenes (the evaluation seed, never trained on), compared with FP32 only: their
    labels are the demo model's classes, not necessarily the model's."""
    return AccuracyData([generate_scene(EVAL_SEED, i)[0] for i in range(count)], None, f"{count} generated scenes")


def convert_to_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """FP16 graph for strongly typed TensorRT, with FP16_KEEP_FP32 ops and the I/O left in FP32."""
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    # Stale FP32 value_info from shape inference makes the converter type Conv weights inconsistently.
    del model.graph.value_info[:]
    block = list(float16.DEFAULT_OP_BLOCK_LIST) + list(FP16_KEEP_FP32)
    with warnings.catch_warnings():  # one "will be truncated" warning per tiny weight: noise, not news
        warnings.simplefilter("ignore", UserWarning)
        half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    _take_fp16_input(half)
    check_graph(half, src, "reduced-precision graph")
    with atomic_output(dst) as tmp:
        onnx.save(half, str(tmp))
    return {"kept_fp32_ops": sorted({n.op_type for n in model.graph.node if n.op_type in block}), "input": "float16"}


def _take_fp16_input(model: onnx.ModelProto) -> None:
    """Makes the graph input FP16 by dropping the converter's input Cast, so the preprocessing kernel
    writes half precision and the engine reads half the bytes (the runtime reads FP16 or FP32 scores)."""
    graph_input = model.graph.input[0]
    casts = [n for n in model.graph.node if n.op_type == "Cast" and list(n.input) == [graph_input.name]
             and onnx.helper.get_attribute_value(n.attribute[0]) == onnx.TensorProto.FLOAT16]
    if not casts:
        return
    renamed = {c.output[0]: graph_input.name for c in casts}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    kept = [n for n in model.graph.node if n not in casts]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    graph_input.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16


class _Reader:
    """ONNX Runtime calibration data reader over preprocessed images, one at a time."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self._items = iter([{input_name: b[None]} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize_to_int8(src: Path, dst: Path, data: AccuracyData, spec: PreprocessSpec, cache_dir: Path,
                     method: str = "entropy") -> dict[str, Any]:
    """Symmetric per-channel INT8 Q/DQ graph; calibration ranges cached by model and images."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not data.images:
        raise ConfigError("no calibration images", hint="pass --calib-images DIR with images like the ones you will segment")
    methods = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
               "minmax": CalibrationMethod.MinMax}
    key = sha256_json([sha256_file(src), method, [hashlib.sha256(im.tobytes()).hexdigest() for im in data.images]])[:16]
    cache = cache_dir / f"calibration.{key}.json"
    cached = cache.is_file()
    model = onnx.load(str(src))
    session_input = model.graph.input[0].name
    reader = None if cached else _Reader(session_input, [preprocess_cpu(im, spec) for im in data.images])
    options: dict[str, Any] = {}
    if "calibration_cache_path" in inspect.signature(quantize_static).parameters:
        options["calibration_cache_path"] = cache
    elif reader is None:
        reader = _Reader(session_input, [preprocess_cpu(im, spec) for im in data.images])
    with atomic_output(dst) as tmp:
        # Per-channel Q/DQ (an `axis` on DequantizeLinear) exists from opset 13, which TensorRT's explicit
        # quantization needs too; the FP32 graph keeps the opset it was exported at.
        opset13 = tmp.with_name(tmp.name + ".opset13.onnx")
        onnx.save(_at_least_opset_13(model), str(opset13))
        try:
            # The entropy calibrator prints its histogram progress; it is not the user's business.
            with _without_root_warning(PREPROCESS_ADVICE), contextlib.redirect_stdout(io.StringIO()):
                quantize_static(str(opset13), str(tmp), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                calibrate_method=methods[method],
                                # TensorRT takes symmetric INT8 scales only, and quantizes biases itself.
                                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                               "QuantizeBias": False},
                                op_types_to_quantize=["Conv", "Add", "Mul", "Concat"], **options)
        finally:
            opset13.unlink(missing_ok=True)
    return {"calibration": {"method": method, "images": len(data.images), "source": data.source,
                            "cache": cache.name, "cache_reused": cached}}


@contextlib.contextmanager
def _without_root_warning(prefix: str) -> Iterator[None]:
    """Drops the root-logger records that start with `prefix` while the block runs."""
    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(prefix)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _at_least_opset_13(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnx import version_converter

    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return model if opset >= 13 else version_converter.convert_version(model, 13)


def accuracy_report(reference: Path, candidate: Path, precision: str, data: AccuracyData, spec: PreprocessSpec,
                    max_miou_loss: float) -> dict[str, Any]:
    """Compares `candidate` with the FP32 graph on ONNX Runtime CPU: pixel agreement and mIoU loss.

    With labels the loss is mIoU(FP32) - mIoU(candidate) against them. Without labels there is no mIoU
    to lose; the share of pixels whose label changed (in points) stands in for it, since an mIoU
    measured against FP32's own labels swings wildly on classes that cover a handful of pixels."""
    full, reduced = OnnxRuntimeCpuExecutor(reference), OnnxRuntimeCpuExecutor(candidate)
    want, got = [], []
    for image in data.images:
        batch = preprocess_cpu(image, spec)[None]
        want.append(labels_from_output(full.run(batch)[0]))
        got.append(labels_from_output(reduced.run(batch)[0]))
    classes = int(max(max(int(w.max()) for w in want), max(int(g.max()) for g in got))) + 1
    agreement = float(np.mean([np.mean(w == g) for w, g in zip(want, got)]))
    report: dict[str, Any] = {"precision": precision, "images": len(data.images), "source": data.source,
                              "pixel_agreement": agreement}
    if data.labels is not None:
        classes = max(classes, max(int(l[l != 255].max(initial=0)) for l in data.labels) + 1)
        full_confusion, reduced_confusion = Confusion(classes), Confusion(classes)
        for w, g, label in zip(want, got, data.labels):
            size = (label.shape[1], label.shape[0])
            full_confusion.add(cv2.resize(w.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST), label)
            reduced_confusion.add(cv2.resize(g.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST), label)
        report.update({"fp32_miou": full_confusion.mean_iou(), "miou": reduced_confusion.mean_iou(),
                       "miou_loss_points": 100 * (full_confusion.mean_iou() - reduced_confusion.mean_iou()),
                       "measured_against": "labels"})
    else:
        versus_fp32 = Confusion(classes)
        for w, g in zip(want, got):
            versus_fp32.add(g, w)
        report.update({"miou_vs_fp32": versus_fp32.mean_iou(), "miou_loss_points": 100 * (1 - agreement),
                       "measured_against": "fp32 labels (share of changed pixels)"})
    report["max_miou_loss_points"] = max_miou_loss
    report["verdict"] = "pass" if report["miou_loss_points"] <= max_miou_loss else "fail"
    return report


def write_accuracy(path: Path, report: dict[str, Any], accept_loss: bool) -> None:
    """Writes accuracy.json; raises when the loss is above the limit and the user did not accept it."""
    write_json_atomic(path, report)
    if report["verdict"] == "fail" and not accept_loss:
        raise OptimizeError(f"{report['precision']} loses {report['miou_loss_points']:.2f} mIoU points against FP32",
                            path=path, note=f"limit {report['max_miou_loss_points']} points, pixel agreement "
                                            f"{report['pixel_agreement']:.4f} on {report['images']} images",
                            hint="pass --accept-accuracy-loss, raise --max-miou-loss, or use more/better --calib-images")
