"""Image-quality metrics on frames in [0, 1]."""
from __future__ import annotations

import numpy as np

#: PSNR reported for a perfect reconstruction (mean squared error of zero).
PSNR_CAP_DB = 100.0


def psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two same-shape arrays in [0, 1], capped at ``PSNR_CAP_DB``."""
    if prediction.shape != target.shape:
        raise ValueError(f"psnr needs arrays of one shape, got {prediction.shape} and {target.shape}")
    mse = float(np.mean((np.asarray(prediction, np.float64) - np.asarray(target, np.float64)) ** 2))
    if mse <= 10.0 ** (-PSNR_CAP_DB / 10.0):
        return PSNR_CAP_DB
    return float(-10.0 * np.log10(mse))
