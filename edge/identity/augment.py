"""Enrolment augmentation (the seed's recipe): ~20 plausible variants of each aligned face photo."""

from __future__ import annotations

import cv2
import numpy as np


def augment(aligned_rgb: np.ndarray, count: int, seed: int = 0) -> list[np.ndarray]:
    """count variants: flips, brightness/contrast, small rotation/scale/shift, blur and noise."""
    rng = np.random.default_rng(seed)
    size = aligned_rgb.shape[0]
    variants = []
    for i in range(count):
        img = aligned_rgb
        if i % 2 == 0:
            img = img[:, ::-1]
        angle, scale = rng.uniform(-10, 10), rng.uniform(0.93, 1.07)
        matrix = np.asarray(cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale), np.float64)
        matrix[:, 2] += rng.uniform(-0.04, 0.04, 2) * size
        img = cv2.warpAffine(np.ascontiguousarray(img), matrix, (size, size), borderMode=cv2.BORDER_REPLICATE)
        alpha, beta = rng.uniform(0.75, 1.25), rng.uniform(-30, 30)
        img = np.clip(img.astype(np.float32) * alpha + beta, 0, 255)
        if rng.random() < 0.3:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.2))
        if rng.random() < 0.3:
            img = img + rng.normal(0, rng.uniform(2, 8), img.shape)
        variants.append(np.clip(img, 0, 255).astype(np.uint8))
    return variants
