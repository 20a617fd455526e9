"""Non-learned reconstructions of a frame from its sampled pixels.

Every reconstructor, these baselines and the learned SPT alike, implements :class:`Reconstructor`:
``reset()`` at the start of a session, then ``reconstruct(pixels, state, state_mask)`` once per frame
in session order. The baselines, by name (see :func:`make_baseline`):

- ``nearest`` (:class:`NearestReconstructor`): the value of the nearest sampled pixel (a Voronoi mosaic).
- ``linear`` (:class:`LinearReconstructor`): piecewise-linear interpolation over a Delaunay triangulation
  of the samples; nearest outside their convex hull.
- ``telea``, ``ns`` (:class:`InpaintReconstructor`): OpenCV inpainting of the unsampled pixels (Telea's
  fast marching or Navier-Stokes).
- ``hold`` (:class:`TemporalHoldReconstructor`): everything sampled so far in the session, scroll
  compensated with the camera x from RAM (:class:`models.memory.MemoryBank`); nearest where nothing was seen.
- ``previous`` (:class:`PreviousReconstructor`): the previous output with this frame's samples pasted over
  it (no motion compensation).

Each returns ``(H, W, C)`` float32 in [0, 1] (``H, W = 240, 256``) and keeps every sampled pixel's value exactly.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import cv2
import numpy as np
from scipy import ndimage
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import QhullError
from threadpoolctl import ThreadpoolController

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


@runtime_checkable
class Reconstructor(Protocol):
    """The one interface every reconstructor implements: these baselines and the learned SPT.

    A session is a run of frames of one game. Call :meth:`reset` at its start (stateful
    reconstructors forget everything they saw), then :meth:`reconstruct` once per frame, in
    session order.
    """

    name: str
    """short name, e.g. ``"nearest"`` (the key of :data:`BASELINES` for the baselines)"""

    def reset(self) -> None:
        """Start a new session: forget every earlier frame."""
        ...

    def reconstruct(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> np.ndarray:
        """The full frame from this frame's samples and RAM state.

        ``pixels`` is ``(N, 2 + C)`` float rows ``(u, v, value...)`` exactly as in the environment's
        observation (``u, v`` in [0, 1] at pixel centres, ``C`` = 1 luma or 3 RGB, values in [0, 1]);
        ``state`` and ``state_mask`` are the observation's ``(D,)`` vectors. Returns ``(H, W, C)``
        float32 in [0, 1] with ``H, W = 240, 256``.
        """
        ...


# --- helpers ----------------------------------------------------------------------------------------


def _check_pixels(pixels: np.ndarray, channels: int | None = None) -> np.ndarray:
    """``pixels`` as a float32 ``(N, 2 + C)`` array, or a ValueError saying what was expected."""
    array = np.asarray(pixels, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] not in (3, 5) or len(array) == 0:
        raise ValueError(f"pixels has shape {array.shape}, expected (N, 3) rows (u, v, luma) or (N, 5) rows "
                         "(u, v, r, g, b) with N >= 1: pass the observation's 'pixels' unchanged")
    if channels is not None and array.shape[1] - 2 != channels:
        raise ValueError(f"pixels carry {array.shape[1] - 2} value(s) per pixel but this session started with "
                         f"{channels}: call reset() before reconstructing a session of another colour mode")
    return array


def _sample_positions(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows (N,), cols (N,), values (N, C) float32)`` of ``(N, 2 + C)`` sampled pixels on the NES frame."""
    rows, cols = uv_to_pixel(pixels[:, :2], FRAME_HEIGHT, FRAME_WIDTH)
    return rows, cols, np.ascontiguousarray(pixels[:, 2:], dtype=np.float32)


def _paste(image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """``image (H, W, C)`` clipped to [0, 1] as float32, with the sampled values written at their pixels."""
    out = np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)
    rows, cols, values = _sample_positions(pixels)
    out[rows, cols] = values
    return out


# --- stateless baselines ----------------------------------------------------------------------------


class NearestReconstructor:
    """Value of the nearest sampled pixel, frame by frame (:func:`nearest_reconstruction`)."""

    name = "nearest"
    stateful = False  # each frame is rebuilt from its own samples alone

    def reset(self) -> None:
        """Nothing to forget: each frame is rebuilt from its own samples."""

    def reconstruct(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> np.ndarray:
        """``(N, 2 + C)`` samples -> ``(H, W, C)`` float32 Voronoi mosaic."""
        return nearest_reconstruction(_check_pixels(pixels), FRAME_HEIGHT, FRAME_WIDTH)


class LinearReconstructor:
    """Piecewise-linear interpolation over a Delaunay triangulation of the sampled pixel positions.

    Pixels outside the samples' convex hull (and every pixel when the samples do not span a
    triangle) take the nearest sample's value.
    """

    name = "linear"
    stateful = False  # each frame is rebuilt from its own samples alone

    def __init__(self) -> None:
        rows, cols = np.mgrid[0:FRAME_HEIGHT, 0:FRAME_WIDTH]
        self._grid = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64)  # (H * W, 2)
        # The triangulation's barycentric transforms are ~1000 tiny LAPACK calls; multi-threaded OpenBLAS
        # turns them from 1 ms into seconds when another process is using the cores, so run them on one thread.
        self._blas = ThreadpoolController()

    def reset(self) -> None:
        """Nothing to forget: each frame is rebuilt from its own samples."""

    def reconstruct(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> np.ndarray:
        """``(N, 2 + C)`` samples -> ``(H, W, C)`` float32 interpolation."""
        pixels = _check_pixels(pixels)
        nearest = nearest_reconstruction(pixels, FRAME_HEIGHT, FRAME_WIDTH)
        rows, cols, values = _sample_positions(pixels)
        # one value per pixel (the last sample wins, as in the paste) so that Qhull sees distinct points
        flat = rows * FRAME_WIDTH + cols
        _, last = np.unique(flat[::-1], return_index=True)
        keep = len(flat) - 1 - last
        points = np.stack([rows[keep], cols[keep]], axis=1).astype(np.float64)
        try:
            with self._blas.limit(limits=1, user_api="blas"):
                interpolated = LinearNDInterpolator(points, values[keep].astype(np.float64))(self._grid)
        except (QhullError, ValueError):  # fewer than 3 samples, or all on one line
            return _paste(nearest, pixels)
        image = interpolated.reshape(FRAME_HEIGHT, FRAME_WIDTH, -1)
        outside = np.isnan(image)
        image[outside] = nearest[outside]
        return _paste(image, pixels)


#: OpenCV inpainting algorithms by method name.
INPAINT_METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


class InpaintReconstructor:
    """OpenCV inpainting of the unsampled pixels of an 8-bit image that knows only the samples.

    ``method`` is ``"telea"`` (Telea's fast-marching method) or ``"ns"`` (Navier-Stokes);
    ``radius`` is the neighbourhood (pixels) each filled pixel is estimated from. The samples are
    quantised to 8 bits for OpenCV, then pasted back exactly. Over samples this sparse, OpenCV's Telea
    extrapolates gradients and drifts by a few 8-bit levels even on a constant image; Navier-Stokes does not.
    """

    def __init__(self, method: str = "telea", radius: int = 3):
        if method not in INPAINT_METHODS:
            raise ValueError(f"unknown inpainting method {method!r}: expected one of {sorted(INPAINT_METHODS)}")
        if radius < 1:
            raise ValueError(f"inpainting radius must be a positive number of pixels, got {radius}")
        self.name = method
        self.method, self.radius = method, radius

    def reset(self) -> None:
        """Nothing to forget: each frame is rebuilt from its own samples."""

    def reconstruct(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> np.ndarray:
        """``(N, 2 + C)`` samples -> ``(H, W, C)`` float32 inpainting."""
        pixels = _check_pixels(pixels)
        rows, cols, values = _sample_positions(pixels)
        channels = values.shape[1]
        known = np.zeros((FRAME_HEIGHT, FRAME_WIDTH, channels), dtype=np.uint8)
        known[rows, cols] = np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
        mask = np.full((FRAME_HEIGHT, FRAME_WIDTH), 255, dtype=np.uint8)  # nonzero = to be filled
        mask[rows, cols] = 0
        source = known[..., 0] if channels == 1 else known
        filled = cv2.inpaint(source, mask, float(self.radius), INPAINT_METHODS[self.method])
        image = filled.reshape(FRAME_HEIGHT, FRAME_WIDTH, channels).astype(np.float32) / 255.0
        return _paste(image, pixels)

    def __repr__(self) -> str:
        return f"InpaintReconstructor(method={self.method!r}, radius={self.radius})"


# --- baselines with a memory of the session ---------------------------------------------------------


class TemporalHoldReconstructor:
    """Everything sampled so far in the session, held where it lives in the level.

    A :class:`models.memory.MemoryBank` without a stage prior keeps the samples outside the
    RAM-given sprite boxes in world coordinates (camera x from the state), so the held background
    scrolls with the camera; the status bar is held on screen. Per frame: the memory's view of
    this camera, the nearest rebuild of this frame's samples where the memory never saw anything,
    this frame's samples pasted exactly; then the samples (not the reconstruction) enter the memory.
    """

    name = "hold"
    stateful = False  # each frame is rebuilt from its own samples alone

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the session; the next frame sets the number of channels."""
        self.memory = None  # a models.memory.MemoryBank once the first frame tells the channels

    def reconstruct(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> np.ndarray:
        """``(N, 2 + C)`` samples and ``(D,)`` state -> ``(H, W, C)`` float32 held frame."""
        pixels = _check_pixels(pixels, None if self.memory is None else self.memory.channels)
        if self.memory is None:
            from models.memory import MemoryBank, MemoryConfig  # on use: models.memory imports torch

            self.memory = MemoryBank(pixels.shape[1] - 2, priors=None, config=MemoryConfig(use_prior=False))
        canvas, confidence = self.memory.view(state)
        unseen = confidence == 0
        if unseen.any():
            canvas[unseen] = nearest_reconstruction(pixels, FRAME_HEIGHT, FRAME_WIDTH)[unseen]
        image = _paste(canvas, pixels)
        rows, cols, values = _sample_positions(pixels)
        self.memory.update(rows, cols, values, state, state_mask)
        return image


class PreviousReconstructor:
    """The previous output with this frame's samples pasted over it (no motion compensation).

    The first frame of a session is the nearest rebuild of its samples.
    """

    name = "previous"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame."""
        self._previous: np.ndarray | None = None

    def reconstruct(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> np.ndarray:
        """``(N, 2 + C)`` samples -> ``(H, W, C)`` float32: the last output updated at the samples."""
        channels = None if self._previous is None else self._previous.shape[2]
        pixels = _check_pixels(pixels, channels)
        if self._previous is None:
            image = _paste(nearest_reconstruction(pixels, FRAME_HEIGHT, FRAME_WIDTH), pixels)
        else:
            image = _paste(self._previous, pixels)  # _paste copies
        self._previous = image
        return image.copy()


# --- by name ----------------------------------------------------------------------------------------

#: Baseline classes by name; ``telea`` and ``ns`` are :class:`InpaintReconstructor` with that method.
BASELINES: dict[str, type] = {
    "nearest": NearestReconstructor,
    "linear": LinearReconstructor,
    "telea": InpaintReconstructor,
    "ns": InpaintReconstructor,
    "hold": TemporalHoldReconstructor,
    "previous": PreviousReconstructor,
}

#: Keyword arguments a name fixes.
_NAME_KWARGS = {"telea": {"method": "telea"}, "ns": {"method": "ns"}}


def make_baseline(name: str, **kwargs) -> Reconstructor:
    """A baseline reconstructor by name, e.g. ``make_baseline("telea", radius=5)``."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}: expected one of {sorted(BASELINES)}")
    fixed = _NAME_KWARGS.get(name, {})
    clashes = sorted(key for key in fixed if key in kwargs and kwargs[key] != fixed[key])
    if clashes:
        raise ValueError(f"baseline {name!r} fixes {', '.join(f'{k}={fixed[k]!r}' for k in clashes)}; "
                         f"drop {clashes} or choose the baseline named by the value you want")
    return BASELINES[name](**{**kwargs, **fixed})
