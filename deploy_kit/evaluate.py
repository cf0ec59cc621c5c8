"""Segmentation metrics as PaddleSeg computes them (`paddleseg.utils.metrics`): a confusion matrix over
valid pixels (the ignore index, 255, excluded), per-class IoU with absent classes counted as 0, mIoU
as their mean, and pixel accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255


@dataclass
class Confusion:
    num_classes: int

    def __post_init__(self) -> None:
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def add(self, prediction: np.ndarray, label: np.ndarray) -> None:
        valid = label != IGNORE_INDEX
        truth = label[valid].astype(np.int64)
        pred = np.clip(prediction[valid].astype(np.int64), 0, self.num_classes - 1)
        self.matrix += np.bincount(truth * self.num_classes + pred, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes)

    def class_iou(self) -> np.ndarray:
        intersect = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - intersect
        return np.where(union > 0, intersect / np.maximum(union, 1), 0.0)

    def mean_iou(self) -> float:
        return float(self.class_iou().mean())

    def pixel_accuracy(self) -> float:
        return float(np.diag(self.matrix).sum() / max(1, self.matrix.sum()))
