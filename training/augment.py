"""Training augmentation with OpenCV and NumPy (no albumentations: it swaps in headless OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Randomly transform a BGR uint8 image and its 0/1 mask together; returns new arrays."""
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    k = int(rng.integers(4))
    if k:
        image, mask = np.rot90(image, k), np.rot90(mask, k)
    image, mask = np.ascontiguousarray(image), np.ascontiguousarray(mask)
    h, w = mask.shape
    if rng.random() < 0.7:
        angle = rng.uniform(-30, 30)
        scale = rng.uniform(0.75, 1.3)
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-0.1, 0.1, size=2) * (w, h)
        image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        mask = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    if rng.random() < 0.8:
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-8, 9))) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.8, 1.2), 0, 255)
        image = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
        alpha, beta = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
        image = cv2.convertScaleAbs(image, alpha=alpha, beta=beta)
    if rng.random() < 0.2:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.2:
        noise = rng.normal(0, rng.uniform(3, 10), image.shape)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return image, mask
