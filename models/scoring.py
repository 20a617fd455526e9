"""Scorers for ``SGAPS-SMB-v0``'s reconstruction reward: how well a frame is recovered from its samples."""
from __future__ import annotations

import numpy as np

from models.baselines import nearest_reconstruction
from models.metrics import psnr
from sgaps_env.coords import frame_values

RECONSTRUCTORS = {"nearest": nearest_reconstruction}


class BaselineScorer:
    """PSNR (dB) of a non-learned reconstruction of the frame from the sampled pixels.

    Plug it into the environment with ``gym.make("SGAPS-SMB-v0", scorer=BaselineScorer())``. The
    reconstruction is compared with the true frame in the colour mode of the samples (luma for
    one value per pixel, RGB for three).
    """

    def __init__(self, method: str = "nearest"):
        if method not in RECONSTRUCTORS:
            raise ValueError(f"unknown reconstruction method {method!r}: expected one of {sorted(RECONSTRUCTORS)}")
        self.method = method
        self._reconstruct = RECONSTRUCTORS[method]

    def __call__(self, frame: np.ndarray, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> float:
        height, width = frame.shape[:2]
        reconstruction = self._reconstruct(pixels, height, width)
        color = "gray" if pixels.shape[1] == 3 else "rgb"
        return psnr(reconstruction, frame_values(frame, color))

    def __repr__(self) -> str:
        return f"BaselineScorer(method={self.method!r})"
