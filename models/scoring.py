"""Scorers for ``SGAPS-SMB-v0``'s reconstruction reward: how well a frame is recovered from its samples.

A scorer is ``scorer(frame, pixels, state, state_mask) -> float`` (PSNR in dB here) with an optional
``reset()`` that the environment calls at every episode start, so reconstructors with a memory of the
session (the SPT, the temporal hold) start fresh with each episode.

The environment never loads a reconstructor itself (``sgaps_env`` imports nothing from ``models``):
``reward_mode="reconstruction"`` needs a scorer passed in::

    gym.make("SGAPS-SMB-v0", color="rgb", scorer=SPTScorer(), reward_mode="reconstruction")  # the shipped SPT
    gym.make("SGAPS-SMB-v0", scorer=BaselineScorer("hold"), reward_mode="reconstruction")

The shipped SPT checkpoint reconstructs RGB samples; for ``color="gray"`` pass
``SPTScorer(<a checkpoint trained with experiments/train_reconstructor.py --color gray>)`` or a
``BaselineScorer``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.baselines import BASELINES, make_baseline
from models.metrics import psnr
from sgaps_env.coords import color_for, frame_values


def _color_of(pixels: np.ndarray) -> str:
    return "gray" if pixels.shape[1] == 3 else "rgb"


class BaselineScorer:
    """PSNR (dB) of a non-learned reconstruction (any name in ``models.baselines.BASELINES``).

    The reconstruction is compared with the true frame in the colour mode of the samples (luma for
    one value per pixel, RGB for three).
    """

    def __init__(self, method: str = "nearest"):
        if method not in BASELINES:
            raise ValueError(f"unknown reconstruction method {method!r}: expected one of {sorted(BASELINES)}")
        self.method = method
        self.reconstructor = make_baseline(method)

    def reset(self) -> None:
        self.reconstructor.reset()

    def __call__(self, frame: np.ndarray, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> float:
        reconstruction = self.reconstructor.reconstruct(pixels, state, state_mask)
        return psnr(reconstruction, frame_values(frame, _color_of(pixels)))

    def __repr__(self) -> str:
        return f"BaselineScorer(method={self.method!r})"


class SPTScorer:
    """PSNR (dB) of the Sparse Pixel Transformer's reconstruction (the shipped checkpoint by default)."""

    def __init__(self, checkpoint: str | Path | None = None, reconstruction_feedback: bool = True):
        from models.spt import DEFAULT_CHECKPOINT, SPTReconstructor  # torch is imported on use only

        self.reconstructor = SPTReconstructor(checkpoint or DEFAULT_CHECKPOINT,
                                              reconstruction_feedback=reconstruction_feedback)

    @property
    def color(self) -> str:
        return color_for(self.reconstructor.channels)

    def reset(self) -> None:
        self.reconstructor.reset()

    def __call__(self, frame: np.ndarray, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> float:
        reconstruction = self.reconstructor.reconstruct(pixels, state, state_mask)
        return psnr(reconstruction, frame_values(frame, self.color))

    def __repr__(self) -> str:
        return f"SPTScorer({self.reconstructor.checkpoint!s})"
