"""The coordinate convention, pixel extraction and fixed sampling patterns.

This module is the single owner of how a continuous sampling coordinate maps
to a pixel of the NES frame. Everything else (the environment, the recorder,
the reconstructors, the samplers) imports it rather than re-deriving it.

Convention
----------
A frame is ``H x W`` pixels (240 x 256 on the NES), indexed ``frame[y, x]``.

* ``u`` is horizontal and ``v`` is vertical, both in ``[0, 1]``:
  ``u = x / W`` and ``v = y / H`` at a pixel's left/top edge.
* Pixel ``(x, y)`` owns the half-open square ``[x/W, (x+1)/W) x [y/H, (y+1)/H)``;
  its centre is ``((x + 0.5) / W, (y + 0.5) / H)``.
* A coordinate maps to the pixel that owns it: ``x = floor(u * W)``, clamped to
  ``W - 1`` so that ``u = 1.0`` (the closed upper bound of the action space)
  is the last column. The same holds for ``v`` and ``y``.
* Sampled pixels are reported at the centre of the pixel that was read, so the
  ``(u, v)`` in an observation is exactly where its value came from.

A sampled pixel is a row ``(u, v, value...)`` of ``2 + C`` float32 numbers in
``[0, 1]``: one value (``C = 1``, ITU-R BT.601 luma) for ``color="gray"``, or
three (``C = 3``, R, G, B) for ``color="rgb"``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

#: NES picture height and width in pixels.
FRAME_HEIGHT = 240
FRAME_WIDTH = 256

#: ITU-R BT.601 luma weights for R, G, B.
BT601_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

#: Colour modes and the number of values each sampled pixel carries.
COLOR_CHANNELS = {"gray": 1, "rgb": 3}


def channels_for(color: str) -> int:
    """Number of values per sampled pixel for a colour mode ("gray" or "rgb")."""
    try:
        return COLOR_CHANNELS[color]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown color {color!r}: expected one of {sorted(COLOR_CHANNELS)}"
        ) from None


def color_for(channels: int) -> str:
    """The colour mode whose sampled pixels carry ``channels`` values (1: ``"gray"``, 3: ``"rgb"``)."""
    for color, count in COLOR_CHANNELS.items():
        if count == channels:
            return color
    raise ValueError(f"no colour mode has {channels!r} channels: expected one of {sorted(COLOR_CHANNELS.values())} "
                     f"({COLOR_CHANNELS})")


def uv_to_pixel(
    coords: np.ndarray, height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH
) -> tuple[np.ndarray, np.ndarray]:
    """Map ``(N, 2)`` coordinates ``(u, v)`` in [0, 1] to integer ``(rows, cols)``.

    Returns two ``(N,)`` int64 arrays ``y`` (row) and ``x`` (column) such that
    ``frame[y, x]`` is the owning pixel of each coordinate.
    """
    coords = np.asarray(coords)
    cols = np.minimum((coords[:, 0] * width).astype(np.int64), width - 1)
    rows = np.minimum((coords[:, 1] * height).astype(np.int64), height - 1)
    return rows, cols


def pixel_to_uv(
    rows: np.ndarray,
    cols: np.ndarray,
    height: int = FRAME_HEIGHT,
    width: int = FRAME_WIDTH,
) -> np.ndarray:
    """Centres of pixels ``(rows, cols)`` as ``(N, 2)`` float32 ``(u, v)``."""
    uv = np.empty((len(rows), 2), dtype=np.float32)
    uv[:, 0] = (np.asarray(cols, dtype=np.float32) + 0.5) / width
    uv[:, 1] = (np.asarray(rows, dtype=np.float32) + 0.5) / height
    return uv


def extract_pixels(frame: np.ndarray, coords: np.ndarray, color: str = "gray") -> np.ndarray:
    """Read the pixels of an ``(H, W, 3)`` uint8 frame at ``(N, 2)`` coordinates.

    Returns ``(N, 2 + C)`` float32 rows ``(u, v, value...)``: ``(u, v)`` is the
    centre of the pixel read and the values are in [0, 1].
    """
    height, width = frame.shape[:2]
    rows, cols = uv_to_pixel(coords, height, width)
    rgb = frame[rows, cols]  # (N, 3) uint8: fancy indexing copies, so the shared buffer is safe
    out = np.empty((len(rows), 2 + channels_for(color)), dtype=np.float32)
    out[:, :2] = pixel_to_uv(rows, cols, height, width)
    if color == "gray":
        out[:, 2] = rgb @ (BT601_LUMA / 255.0)
    else:
        out[:, 2:] = rgb * np.float32(1.0 / 255.0)
    return out


def _check_uint8_frames(frame: np.ndarray, what: str) -> np.ndarray:
    """``frame`` as an array of uint8 ``(..., 3)`` RGB, or a ValueError saying what was passed instead."""
    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim < 1 or array.shape[-1] != 3:
        raise ValueError(f"{what} takes uint8 RGB frames of shape (..., 3) as the emulator and session files give "
                         f"them, got dtype {array.dtype} and shape {array.shape}: do not divide by 255 first "
                         "(this function does it)")
    return array


def to_gray(frame: np.ndarray) -> np.ndarray:
    """BT.601 luma of ``(..., 3)`` uint8 RGB as float32 in [0, 1], shape ``(...)``."""
    return _check_uint8_frames(frame, "to_gray") @ (BT601_LUMA / 255.0)


def frame_values(frame: np.ndarray, color: str) -> np.ndarray:
    """Frames in a colour mode's values: ``(..., H, W, 3)`` uint8 RGB -> ``(..., H, W, C)`` float32 in [0, 1].

    The one conversion from emulated or stored frames to the values that ``extract_pixels`` reads and
    that reconstructions are scored on. It takes uint8 only, so values already in [0, 1] cannot be
    divided by 255 twice.
    """
    channels = channels_for(color)
    array = _check_uint8_frames(frame, "frame_values")
    if channels == 1:
        return (array @ (BT601_LUMA / 255.0))[..., None]
    return array.astype(np.float32) * np.float32(1.0 / 255.0)


def validate_coords(coords, count: int, clip: bool = False) -> np.ndarray:
    """Check a coordinate action and return it as a ``(count, 2)`` float32 array.

    Raises ``ValueError`` naming the problem when the coordinates are not real
    numbers (bool, complex, string or object arrays: a bool is not a position
    and a complex number has no order), the shape is wrong, a value is NaN or
    infinite, or a value lies outside [0, 1] (unless ``clip`` is set, in which
    case out-of-range finite values are clipped into [0, 1]).
    """
    try:
        array = np.asarray(coords)
    except ValueError:  # ragged nested lists
        raise ValueError(f"coords must be a ({count}, 2) array of (u, v) numbers, got ragged nested "
                         "sequences") from None
    if array.dtype.kind not in "fiu":
        raise ValueError(
            f"coords has dtype {array.dtype}, expected real numbers (a float or integer array): "
            "pass (u, v) as e.g. np.float32 values in [0, 1], not bools, complex numbers, strings or objects"
        )
    array = array.astype(np.float32, copy=False)
    if array.shape != (count, 2):
        raise ValueError(
            f"coords has shape {array.shape}, expected ({count}, 2): one (u, v) pair per "
            f"sampled pixel, sample_count={count}"
        )
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise ValueError(
            f"coords contains NaN or infinite values in {bad} of {count} rows; "
            "every (u, v) must be a finite number in [0, 1]"
        )
    if clip:
        return np.clip(array, 0.0, 1.0)
    if array.min() < 0.0 or array.max() > 1.0:
        outside = int(((array < 0.0) | (array > 1.0)).any(axis=1).sum())
        raise ValueError(
            f"coords has {outside} of {count} rows outside [0, 1] (min {array.min():.4g}, "
            f"max {array.max():.4g}); u = x / width and v = y / height must lie in [0, 1], "
            "or create the environment with clip_coords=True to clip them"
        )
    return array


# --- fixed patterns -------------------------------------------------------------------------


def _grid_shape(count: int, height: int, width: int) -> tuple[int, int]:
    """Rows and columns of the smallest near-square-celled grid with at least ``count`` cells."""
    cols = max(1, round(math.sqrt(count * width / height)))
    rows = math.ceil(count / cols)
    return rows, cols


def _even_subset(total: int, count: int) -> np.ndarray:
    """``count`` indices spread evenly over ``range(total)``."""
    return np.round(np.linspace(0, total - 1, count)).astype(np.int64)


def uniform_grid(count: int, rng: np.random.Generator | None = None, height: int = FRAME_HEIGHT,
                 width: int = FRAME_WIDTH) -> np.ndarray:
    """A regular grid of cell centres whose cells are as square as the frame allows.

    When ``rows * cols`` exceeds ``count`` the surplus cells are dropped evenly.
    """
    rows, cols = _grid_shape(count, height, width)
    v, u = np.meshgrid((np.arange(rows) + 0.5) / rows, (np.arange(cols) + 0.5) / cols, indexing="ij")
    grid = np.stack([u.ravel(), v.ravel()], axis=1)
    return grid[_even_subset(len(grid), count)].astype(np.float32)


def random_pixels(count: int, rng: np.random.Generator | None = None, height: int = FRAME_HEIGHT,
                  width: int = FRAME_WIDTH) -> np.ndarray:
    """``count`` distinct pixels drawn uniformly at random, as pixel centres."""
    rng = np.random.default_rng() if rng is None else rng
    flat = rng.choice(height * width, size=count, replace=False)
    return pixel_to_uv(flat // width, flat % width, height, width)


def stratified(count: int, rng: np.random.Generator | None = None, height: int = FRAME_HEIGHT,
               width: int = FRAME_WIDTH) -> np.ndarray:
    """Jittered grid: one uniformly random point inside each of ``count`` grid cells, as the centres of
    ``count`` distinct pixels.

    Cells are not whole pixels (7.5 px wide at 1085 points), so two neighbouring points can fall in
    one pixel; each such repeat is replaced by a random pixel not yet taken, so no budget is wasted.
    """
    rng = np.random.default_rng() if rng is None else rng
    rows, cols = _grid_shape(count, height, width)
    cells = np.sort(rng.choice(rows * cols, size=count, replace=False))
    jitter = rng.random((count, 2))
    x = np.minimum(((cells % cols + jitter[:, 0]) * width / cols).astype(np.int64), width - 1)
    y = np.minimum(((cells // cols + jitter[:, 1]) * height / rows).astype(np.int64), height - 1)
    flat = y * width + x
    _, first = np.unique(flat, return_index=True)
    if len(first) < count:
        kept = flat[np.sort(first)]
        free = np.setdiff1d(np.arange(height * width), kept, assume_unique=True)
        flat = np.concatenate([kept, rng.choice(free, size=count - len(kept), replace=False)])
    return pixel_to_uv(flat // width, flat % width, height, width)


def checkerboard(count: int, rng: np.random.Generator | None = None, height: int = FRAME_HEIGHT,
                 width: int = FRAME_WIDTH) -> np.ndarray:
    """Quincunx grid: a uniform grid whose odd rows are shifted by half a cell."""
    rows, cols = _grid_shape(count, height, width)
    row_index, col_index = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    u = (col_index + 0.25 + 0.5 * (row_index % 2)) / cols
    v = (row_index + 0.5) / rows
    grid = np.stack([u.ravel(), v.ravel()], axis=1)
    return grid[_even_subset(len(grid), count)].astype(np.float32)


PatternFn = Callable[..., np.ndarray]

#: Fixed patterns that are random draws (samplers may redraw them every frame).
RANDOM_PATTERNS = frozenset({"random", "stratified"})

#: Fixed sampling patterns by name: ``fn(count, rng, height, width) -> (count, 2) float32``.
PATTERNS: dict[str, PatternFn] = {
    "uniform_grid": uniform_grid,
    "random": random_pixels,
    "stratified": stratified,
    "checkerboard": checkerboard,
}


def make_pattern(name: str, count: int, rng: np.random.Generator | None = None,
                 height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH) -> np.ndarray:
    """Coordinates of the fixed pattern ``name`` with ``count`` points, ``(count, 2)`` float32."""
    if name not in PATTERNS:
        raise ValueError(f"unknown sampling pattern {name!r}: expected one of {sorted(PATTERNS)}")
    if not 1 <= count <= height * width:
        raise ValueError(f"sample count must be in [1, {height * width}], got {count}")
    return PATTERNS[name](count, rng, height, width)
