"""The sampler interface: what chooses where the next frame is sampled.

A sampler sees what the agent has seen so far and returns the next frame's coordinates:
``sampler.reset(seed) -> (N, 2)`` gives the first frame's coordinates of an episode and
``sampler.next_coords(observation, info) -> (N, 2)`` those of the frame after ``observation``.
Samplers draw from their own generator, never the environment's, so the game a seed plays does
not depend on the sampler (recorded sessions replay exactly whatever sampled them).
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, PATTERNS, RANDOM_PATTERNS, make_pattern


class Sampler(Protocol):
    """Chooses the ``(N, 2)`` coordinates ``(u, v)`` at which the next frame is sampled."""

    name: str

    def reset(self, seed: int | None = None) -> np.ndarray: ...

    def next_coords(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray: ...


class PatternSampler:
    """A fixed pattern from ``sgaps_env.coords.PATTERNS``: the one owner of "a fixed pattern, redrawn if random".

    ``random`` and ``stratified`` are redrawn for every frame from the sampler's own generator
    unless ``redraw=False``, in which case one draw serves the whole episode; ``uniform_grid`` and
    ``checkerboard`` are the same points every frame. ``reset(seed)`` seeds the generator;
    ``reset(None)`` goes on with the current one (as ``gymnasium.Env.reset`` does), so a run of
    episodes is fixed by the first episode's seed.
    """

    def __init__(self, pattern: str, count: int, redraw: bool | None = None):
        if not isinstance(pattern, str) or pattern not in PATTERNS:
            raise ValueError(f"unknown sampling pattern {pattern!r}: expected one of {sorted(PATTERNS)}")
        if (isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer))
                or not 1 <= count <= FRAME_HEIGHT * FRAME_WIDTH):
            raise ValueError(f"count must be an integer in [1, {FRAME_HEIGHT * FRAME_WIDTH}] (pixels per frame), "
                             f"got {count!r}")
        if redraw is not None and not isinstance(redraw, (bool, np.bool_)):
            raise ValueError(f"redraw must be True, False or None (None: redraw the random patterns), got {redraw!r}")
        self.pattern = pattern
        self.count = int(count)
        self.redraw = pattern in RANDOM_PATTERNS if redraw is None else bool(redraw)
        self.name = f"pattern:{pattern}" + (":redraw" if self.redraw and pattern in RANDOM_PATTERNS else "")
        self._rng = np.random.default_rng()
        self._coords = make_pattern(pattern, self.count, self._rng)

    def reset(self, seed: int | None = None) -> np.ndarray:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._coords = make_pattern(self.pattern, self.count, self._rng)
        return self._coords.copy()

    def next_coords(self, observation=None, info=None) -> np.ndarray:
        if self.redraw:
            self._coords = make_pattern(self.pattern, self.count, self._rng)
        return self._coords.copy()

    def __repr__(self) -> str:
        return f"PatternSampler({self.pattern!r}, count={self.count}, redraw={self.redraw})"
