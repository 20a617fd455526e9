"""Image-quality metrics on frames in [0, 1].

Frames are ``(H, W, C)`` arrays in [0, 1] with ``C`` = 1 (luma) or 3 (RGB). ``psnr`` and ``ssim`` score
the whole frame; ``foreground_psnr`` scores only the pixels inside the RAM-given sprite boxes (Mario, the
active enemies, the square a fire bar's balls sweep, the power-up: :func:`sgaps_env.sprites.sprite_boxes`),
where the background memory cannot help.
LPIPS needs pretrained weights that cannot be downloaded here, so SSIM stands in for a perceptual score.
"""
from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from sgaps_env.sprites import box_mask, sprite_boxes

#: PSNR reported for a perfect reconstruction (mean squared error of zero).
PSNR_CAP_DB = 100.0

#: The keys of :func:`frame_metrics`.
METRIC_NAMES = ("psnr", "ssim", "foreground_psnr")


def psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two same-shape arrays in [0, 1], capped at ``PSNR_CAP_DB``."""
    if prediction.shape != target.shape:
        raise ValueError(f"psnr needs arrays of one shape, got {prediction.shape} and {target.shape}")
    mse = float(np.mean((np.asarray(prediction, np.float64) - np.asarray(target, np.float64)) ** 2))
    if mse <= 10.0 ** (-PSNR_CAP_DB / 10.0):
        return PSNR_CAP_DB
    return float(-10.0 * np.log10(mse))


def _check_frames(prediction: np.ndarray, target: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Both frames as float64 ``(H, W, C)`` with ``C`` in (1, 3), or a ValueError saying what was expected."""
    prediction, target = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    if prediction.shape != target.shape:
        raise ValueError(f"{metric} needs frames of one shape, got {prediction.shape} and {target.shape}")
    if prediction.ndim != 3 or prediction.shape[2] not in (1, 3):
        raise ValueError(f"{metric} needs (H, W, C) frames with C = 1 (luma) or 3 (RGB), got {prediction.shape}: "
                         "add a trailing channel axis to a 2-D luma frame (frame[..., None])")
    return prediction, target


def ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean structural similarity of two ``(H, W, C)`` frames in [0, 1] (1 = identical); channels are
    scored separately and averaged (skimage's ``structural_similarity``, 7x7 window, data range 1)."""
    prediction, target = _check_frames(prediction, target, "ssim")
    if prediction.shape[2] == 1:
        return float(structural_similarity(prediction[..., 0], target[..., 0], data_range=1.0))
    return float(structural_similarity(prediction, target, data_range=1.0, channel_axis=-1))


def foreground_mask(state: np.ndarray, state_mask: np.ndarray, height: int, width: int, margin: int = 0) -> np.ndarray:
    """``(H, W)`` bool: the pixels inside the sprite boxes of ``state`` grown by ``margin`` pixels."""
    return box_mask(sprite_boxes(np.asarray(state), np.asarray(state_mask)), height, width, margin=margin)


def foreground_psnr(prediction: np.ndarray, target: np.ndarray, state: np.ndarray, state_mask: np.ndarray,
                    margin: int = 0) -> float:
    """PSNR (dB) over the pixels inside the sprite boxes that ``state`` (the frame's ``(D,)`` state vector
    and mask) gives, each grown by ``margin`` pixels; frames are ``(H, W, C)`` in [0, 1].

    Returns ``float("nan")`` when no sprite box is on screen, so average it over frames with
    ``np.nanmean`` (and report how many frames had a foreground), never with ``np.mean``.
    """
    prediction, target = _check_frames(prediction, target, "foreground_psnr")
    if margin < 0:
        raise ValueError(f"foreground_psnr margin must be >= 0 pixels, got {margin}")
    inside = foreground_mask(state, state_mask, prediction.shape[0], prediction.shape[1], margin)
    if not inside.any():
        return math.nan
    return psnr(prediction[inside], target[inside])


def frame_metrics(prediction: np.ndarray, target: np.ndarray, state: np.ndarray,
                  state_mask: np.ndarray) -> dict[str, float]:
    """``{"psnr", "ssim", "foreground_psnr"}`` of one ``(H, W, C)`` reconstruction against its true frame
    (``foreground_psnr`` may be NaN: aggregate with ``np.nanmean``)."""
    return {"psnr": psnr(prediction, target), "ssim": ssim(prediction, target),
            "foreground_psnr": foreground_psnr(prediction, target, state, state_mask)}
