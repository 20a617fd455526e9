"""Non-learned reconstructions of a frame from its sampled pixels."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, uv_to_pixel


def nearest_reconstruction(pixels: np.ndarray, height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH) -> np.ndarray:
    """Fill every pixel with the value of the nearest sampled pixel (a Voronoi mosaic).

    ``pixels`` is ``(N, 2 + C)`` rows ``(u, v, value...)``; returns ``(H, W, C)`` float32 in [0, 1].
    """
    if len(pixels) == 0:
        raise ValueError("nearest_reconstruction needs at least one sampled pixel")
    rows, cols = uv_to_pixel(pixels[:, :2], height, width)
    values = np.zeros((height, width, pixels.shape[1] - 2), dtype=np.float32)
    values[rows, cols] = pixels[:, 2:]
    unsampled = np.ones((height, width), dtype=bool)
    unsampled[rows, cols] = False
    nearest_row, nearest_col = ndimage.distance_transform_edt(unsampled, return_distances=False, return_indices=True)
    return values[nearest_row, nearest_col]
