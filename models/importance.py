"""Importance maps: where the SPT thinks the next samples are worth most.

The seed design's three signals, each an ``(H, W)`` map normalised to [0, 1] and mixed as
``0.4 * uncertainty + 0.3 * attention + 0.3 * temporal``:

| signal | what it is | why it marks a place |
|---|---|---|
| uncertainty | the standard deviation of the frame over Monte-Carlo-dropout passes, averaged over channels | the model is unsure of its output there |
| attention | ``1 -`` the attention a tile's query pays to samples in its own and the 8 neighbouring 8x8 tiles (last decoder layer, heads averaged) | the tile was reconstructed without local evidence: information is missing there |
| temporal | ``|frame_t - frame_{t-1}|`` after shifting the previous reconstruction by the camera scroll the state gives, averaged over channels | the picture is changing there (sprites, blinking blocks): the memory goes stale first |

Each raw map is divided by its 99th percentile and clipped, so one bright pixel does not flatten the
rest. The mix is then moved by the camera motion predicted from the state, ``lookahead`` frames
ahead (motion and latency compensation: the map describes frame ``t``, the samples it buys land on
frame ``t + lookahead``).

    analyzer = ImportanceAnalyzer(SPTReconstructor())
    maps = analyzer.analyze(pixels, state, state_mask)    # also reconstructs and updates the memory
    maps.combined                                         # (240, 256) float32 in [0, 1]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.spt import SPTReconstructor
from sgaps_env.sprites import HUD_ROWS, camera_velocity

#: The seed's mix of the three signals: uncertainty, attention, temporal error.
DEFAULT_MIX = (0.4, 0.3, 0.3)


@dataclass
class ImportanceConfig:
    """How an :class:`ImportanceAnalyzer` builds its maps."""

    mc_samples: int = 4
    """Monte-Carlo-dropout passes per frame for the uncertainty map (>= 2)"""
    mix: tuple[float, float, float] = DEFAULT_MIX
    """weights of (uncertainty, attention, temporal); only their ratios matter"""
    neighbourhood: int = 1
    """tiles either side that count as local evidence for the attention map"""
    lookahead: int = 1
    """frames between the analysed frame and the frame the samples land on (1 + link latency in frames)"""

    def __post_init__(self):
        if self.mc_samples < 2:
            raise ValueError(f"mc_samples must be >= 2 to estimate a spread, got {self.mc_samples}")
        if len(self.mix) != 3 or min(self.mix) < 0 or sum(self.mix) <= 0:
            raise ValueError(f"mix must be three weights >= 0 (uncertainty, attention, temporal) with a positive "
                             f"sum, got {self.mix}")
        if self.lookahead < 0:
            raise ValueError(f"lookahead must be >= 0 frames, got {self.lookahead}")


@dataclass
class ImportanceMaps:
    """One frame's maps, each ``(H, W)`` float32 in [0, 1]; ``combined`` is already motion compensated."""

    uncertainty: np.ndarray
    attention: np.ndarray
    temporal: np.ndarray
    combined: np.ndarray
    reconstruction: np.ndarray
    """the frame ``(H, W, C)`` the maps were computed with"""


def normalise(values: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """``values / percentile(values)`` clipped to [0, 1] (all zeros stay zeros)."""
    scale = float(np.percentile(values, percentile))
    if scale <= 0:
        scale = float(values.max())
    if scale <= 0:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip(values / scale, 0.0, 1.0).astype(np.float32)


def shift_with_camera(image: np.ndarray, scroll: int, fill: float = 0.0) -> np.ndarray:
    """Move the level part of ``image`` (rows >= HUD_ROWS) left by ``scroll`` pixels, as the next frame
    shows it after the camera moves ``scroll`` pixels right; columns that scroll in get ``fill``."""
    if scroll == 0:
        return image.copy()
    shifted = np.full_like(image, fill)
    shifted[:HUD_ROWS] = image[:HUD_ROWS]
    width = image.shape[1]
    if abs(scroll) < width:
        if scroll > 0:
            shifted[HUD_ROWS:, :width - scroll] = image[HUD_ROWS:, scroll:]
        else:
            shifted[HUD_ROWS:, -scroll:] = image[HUD_ROWS:, :width + scroll]
    return shifted


def attention_deficit(attention: np.ndarray, token_xy: np.ndarray, grid: tuple[int, int], tile: int,
                      neighbourhood: int = 1) -> np.ndarray:
    """``1 -`` each tile query's attention on samples within ``neighbourhood`` tiles -> ``(rows, cols)``.

    ``attention (Q, 1 + N)``: row-major tile queries over the state token then the N samples at
    ``token_xy (N, 2)`` (column, row) pixels.
    """
    rows, cols = grid
    token_row, token_col = token_xy[:, 1] // tile, token_xy[:, 0] // tile
    query_row, query_col = np.divmod(np.arange(rows * cols), cols)
    near = ((np.abs(query_row[:, None] - token_row[None]) <= neighbourhood)
            & (np.abs(query_col[:, None] - token_col[None]) <= neighbourhood))  # (Q, N)
    local = (attention[:, 1:] * near).sum(axis=1)
    return np.clip(1.0 - local, 0.0, 1.0).reshape(rows, cols).astype(np.float32)


class ImportanceAnalyzer:
    """Runs the SPT on each frame's samples and turns what it computes into importance maps.

    It keeps its own reconstructor (and so its own temporal memory): feed it every frame of a
    session in order, through :meth:`analyze` or, on frames whose map is not needed, the cheaper
    :meth:`observe`. Call :meth:`reset` when a session starts.
    """

    def __init__(self, reconstructor: SPTReconstructor | None = None, config: ImportanceConfig | None = None):
        self.reconstructor = reconstructor if reconstructor is not None else SPTReconstructor()
        self.config = config or ImportanceConfig()
        self.reset()

    def reset(self) -> None:
        self.reconstructor.reset()
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # (frame, state)

    def observe(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> np.ndarray:
        """Reconstruct a frame (keeping the memory in step) without computing maps -> ``(H, W, C)``."""
        frame = self.reconstructor.reconstruct(pixels, state, state_mask)
        self._previous = (frame, np.asarray(state).copy())
        return frame

    def analyze(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> ImportanceMaps:
        """This frame's maps (and reconstruction), the combined one moved to where the samples will land."""
        config = self.config
        detail = self.reconstructor.reconstruct_detailed(pixels, state, state_mask, need_weights=True,
                                                         mc_samples=config.mc_samples)
        frame = detail["frame"]
        model = self.reconstructor.model
        tile = model.config.tile
        deficit = attention_deficit(detail["attention"], detail["token_xy"], model.grid_shape, tile,
                                    config.neighbourhood)
        attention = np.repeat(np.repeat(deficit, tile, axis=0), tile, axis=1)
        if self._previous is None:
            temporal = np.zeros(frame.shape[:2], np.float32)
            scroll = 0
        else:
            previous_frame, previous_state = self._previous
            scroll = camera_velocity(state, previous_state)
            temporal = np.abs(frame - shift_with_camera(previous_frame, scroll, fill=np.nan)).mean(axis=2)
            temporal = np.nan_to_num(temporal, nan=1.0)  # newly scrolled-in columns: unseen, so important
        uncertainty = normalise(detail["uncertainty"])
        attention, temporal = normalise(attention), normalise(temporal)
        weights = np.asarray(config.mix, np.float64) / sum(config.mix)
        combined = (weights[0] * uncertainty + weights[1] * attention + weights[2] * temporal).astype(np.float32)
        # the camera keeps its speed: the next frames scroll by the same step
        combined = shift_with_camera(combined, scroll * config.lookahead, fill=1.0)
        self._previous = (frame, np.asarray(state).copy())
        return ImportanceMaps(uncertainty, attention, temporal, combined, frame)
