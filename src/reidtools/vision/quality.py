"""HSGL's image quality assessor: resolution R = w*h and sharpness S = Var(Laplacian(I))."""

from __future__ import annotations

import numpy as np
from PIL import Image


def laplacian(gray: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian [[0,1,0],[1,-4,1],[0,1,0]] with reflect-101 borders (OpenCV's
    `cv2.Laplacian(gray, cv2.CV_64F)` with its default ksize=1, which the papers' code uses)."""
    g = np.pad(gray.astype(np.float64), 1, mode="reflect")
    return g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]


def sharpness(img: Image.Image) -> float:
    """Variance of the Laplacian of the 8-bit grey image (ITU-R 601 luma, as cv2's BGR2GRAY)."""
    gray = np.asarray(img.convert("L"))
    return float(laplacian(gray).var())


def resolution(img: Image.Image) -> int:
    return int(img.width * img.height)


def scores(img: Image.Image) -> dict:
    return {"resolution": resolution(img), "sharpness": round(sharpness(img), 4)}
