"""Deterministic synthetic street scenes for training and evaluating the demo model.

Every image is a pure function of (seed, index), so a validation set drawn with a seed never used
in training is genuinely unseen, and the same images can be regenerated anywhere without a download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("sky", "building", "road", "vegetation", "vehicle", "person")
PALETTE: np.ndarray = np.array(
    [[180, 130, 70], [70, 70, 70], [128, 64, 128], [35, 142, 107], [142, 0, 0], [60, 20, 220]],
    dtype=np.uint8,
)  # BGR, Cityscapes colours for the same classes
SKY, BUILDING, ROAD, VEGETATION, VEHICLE, PERSON = range(len(CLASS_NAMES))
# Seeds: training uses 1 and 2 (models/train_demo.py); evaluation uses 3, never seen in training.
EVAL_SEED = 3


@dataclass(frozen=True)
class SceneSpec:
    """Size of the generated scenes (NCHW order: height before width)."""

    height: int = 256
    width: int = 512


def generate_scene(seed: int, index: int, spec: SceneSpec = SceneSpec()) -> tuple[np.ndarray, np.ndarray]:
    """Returns (BGR uint8 image, uint8 label map) for scene `index` of the set drawn with `seed`."""
    rng = np.random.default_rng([seed, index])
    h, w = spec.height, spec.width
    image = np.zeros((h, w, 3), np.float32)
    label = np.zeros((h, w), np.uint8)
    horizon = int(h * rng.uniform(0.35, 0.55))
    _draw_sky(image, label, horizon, rng)
    _draw_buildings(image, label, horizon, rng)
    _draw_vegetation(image, label, horizon, rng)
    _draw_road(image, label, horizon, rng)
    for _ in range(rng.integers(1, 4)):
        _draw_vehicle(image, label, horizon, rng)
    for _ in range(rng.integers(0, 3)):
        _draw_person(image, label, horizon, rng)
    return _photographic_effects(image, rng), label


def write_dataset(root: Path, seed: int, count: int, spec: SceneSpec = SceneSpec()) -> tuple[Path, Path]:
    """Writes `count` scenes as PaddleSeg expects them: images/*.png and labels/*.png (class ids)."""
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, label = generate_scene(seed, i, spec)
        cv2.imwrite(str(images / f"{i:05d}.png"), image)
        cv2.imwrite(str(labels / f"{i:05d}.png"), label)
    return images, labels


def _noise_texture(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    """Smooth value noise in [-1, 1], the base of every surface texture."""
    small = rng.uniform(-1, 1, (max(2, h // scale), max(2, w // scale))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _jitter(rng: np.random.Generator, bgr: tuple[float, float, float], amount: float) -> np.ndarray:
    return np.clip(np.array(bgr, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _paint(image: np.ndarray, label: np.ndarray, mask: np.ndarray, colour: np.ndarray,
           texture: np.ndarray, class_id: int) -> None:
    image[mask] = colour + texture[mask][:, None]
    label[mask] = class_id


def _draw_sky(image: np.ndarray, label: np.ndarray, horizon: int, rng: np.random.Generator) -> None:
    h, w = label.shape
    top, bottom = _jitter(rng, (200, 140, 80), 30), _jitter(rng, (235, 210, 180), 20)
    t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    image[:horizon] = top * (1 - t) + bottom * t
    clouds = np.clip(_noise_texture(rng, horizon, w, 24), 0, 1)[..., None] * rng.uniform(20, 60)
    image[:horizon] += clouds
    label[:horizon] = SKY


def _draw_buildings(image: np.ndarray, label: np.ndarray, horizon: int, rng: np.random.Generator) -> None:
    h, w = label.shape
    x = int(rng.integers(-40, 20))
    while x < w:
        bw = int(rng.integers(w // 8, w // 3))
        top = int(rng.integers(int(h * 0.05), max(int(h * 0.06), horizon - 20)))
        mask = np.zeros((h, w), bool)
        mask[top:horizon + 4, max(0, x):min(w, x + bw)] = True
        colour = _jitter(rng, (rng.uniform(60, 160),) * 3, 35)
        texture = _noise_texture(rng, h, w, 6) * 12
        _paint(image, label, mask, colour, texture, BUILDING)
        _draw_windows(image, top, horizon, max(0, x), min(w, x + bw), rng)
        x += bw + int(rng.integers(0, w // 10))


def _draw_windows(image: np.ndarray, top: int, bottom: int, left: int, right: int,
                  rng: np.random.Generator) -> None:
    glass = _jitter(rng, (120, 100, 60), 30)
    step_y, step_x = int(rng.integers(12, 20)), int(rng.integers(12, 22))
    for y in range(top + 5, bottom - 8, step_y):
        for x in range(left + 4, right - 8, step_x):
            image[y:y + step_y // 2, x:x + step_x // 2] = glass


def _draw_vegetation(image: np.ndarray, label: np.ndarray, horizon: int, rng: np.random.Generator) -> None:
    h, w = label.shape
    mask = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(1, 4)):
        cx, cy = int(rng.integers(0, w)), int(horizon - rng.integers(0, h // 5))
        cv2.ellipse(mask, (cx, cy), (int(rng.integers(25, 70)), int(rng.integers(20, 50))), 0, 0, 360, 1, -1)
        cv2.rectangle(mask, (cx - 4, cy), (cx + 4, horizon + 6), 1, -1)
    colour = _jitter(rng, (40, 130, 50), 25)
    texture = _noise_texture(rng, h, w, 3) * 30
    _paint(image, label, mask.astype(bool), colour, texture, VEGETATION)


def _draw_road(image: np.ndarray, label: np.ndarray, horizon: int, rng: np.random.Generator) -> None:
    h, w = label.shape
    mask = np.zeros((h, w), bool)
    mask[horizon:] = True
    shade = rng.uniform(70, 120)
    colour = _jitter(rng, (shade + 10, shade, shade + 10), 8)
    texture = _noise_texture(rng, h, w, 2) * 10
    _paint(image, label, mask, colour, texture, ROAD)
    vanishing_x = int(w * rng.uniform(0.35, 0.65))
    for lane in (-0.6, 0.0, 0.6):
        bottom_x = int(vanishing_x + lane * w)
        cv2.line(image, (vanishing_x, horizon), (bottom_x, h), (230, 230, 230), 3)


def _draw_vehicle(image: np.ndarray, label: np.ndarray, horizon: int, rng: np.random.Generator) -> None:
    h, w = label.shape
    base = int(rng.integers(horizon + 15, h))
    size = (base - horizon) / (h - horizon)  # perspective: nearer vehicles are lower and bigger
    vw, vh = int(60 + 140 * size), int(30 + 60 * size)
    x = int(rng.integers(-vw // 3, w - vw // 2))
    mask = np.zeros((h, w), np.uint8)
    cv2.rectangle(mask, (x, base - vh), (x + vw, base - vh // 4), 1, -1)
    cv2.rectangle(mask, (x + vw // 5, base - vh - vh // 3), (x + 4 * vw // 5, base - vh), 1, -1)
    colour = _jitter(rng, tuple(rng.choice([[40, 40, 200], [200, 60, 30], [230, 230, 230], [30, 160, 220]])), 20)
    _paint(image, label, mask.astype(bool), colour, _noise_texture(rng, h, w, 8) * 6, VEHICLE)
    wheels = np.zeros((h, w), np.uint8)
    for wx in (x + vw // 5, x + 4 * vw // 5):
        cv2.circle(wheels, (wx, base - vh // 4), max(5, vh // 4), 1, -1)
    _paint(image, label, wheels.astype(bool), np.full(3, 25, np.float32), np.zeros((h, w), np.float32), VEHICLE)
    image[max(0, base - vh - vh // 3 + 3):base - vh - 2, max(0, x + vw // 5 + 4):max(0, x + 4 * vw // 5 - 4)] = (90, 70, 50)


def _draw_person(image: np.ndarray, label: np.ndarray, horizon: int, rng: np.random.Generator) -> None:
    h, w = label.shape
    feet = int(rng.integers(horizon + 10, h))
    size = (feet - horizon) / (h - horizon)
    ph = int(70 + 100 * size)
    pw = ph // 3
    x = int(rng.integers(0, w - pw))
    mask = np.zeros((h, w), np.uint8)
    head = ph // 7
    cv2.circle(mask, (x + pw // 2, feet - ph + head), head, 1, -1)
    cv2.rectangle(mask, (x, feet - ph + 2 * head), (x + pw, feet - ph // 2), 1, -1)
    cv2.rectangle(mask, (x + pw // 8, feet - ph // 2), (x + 7 * pw // 8, feet), 1, -1)
    clothes = _jitter(rng, tuple(rng.choice([[30, 200, 240], [200, 40, 160], [60, 60, 220], [40, 220, 40]])), 25)
    _paint(image, label, mask.astype(bool), clothes, _noise_texture(rng, h, w, 4) * 10, PERSON)
    skin = np.zeros((h, w), np.uint8)
    cv2.circle(skin, (x + pw // 2, feet - ph + head), head, 1, -1)
    image[skin.astype(bool)] = _jitter(rng, (120, 160, 210), 25)


def _photographic_effects(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting, blur and sensor noise, so the model learns shapes and textures, not exact colours."""
    gain, bias = rng.uniform(0.7, 1.25), rng.uniform(-20, 20)
    tint = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    image = image * gain * tint + bias
    h, w = image.shape[:2]
    vignette = 1 - 0.3 * np.clip(_noise_texture(rng, h, w, 64), 0, 1)
    image *= vignette[..., None]
    sigma = rng.uniform(0.1, 1.2)
    image = cv2.GaussianBlur(image, (0, 0), sigma)
    image += rng.normal(0, rng.uniform(1, 6), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
