"""Budget allocation over a ``K x K`` tile grid, and the map from an allocation to sampling coordinates.

The sampling primitive that tile-based samplers share: ``SamplerLearningWrapper`` turns a learned
action into coordinates with ``allocation_to_coords``; the sampling policies of ``agents.policies``
and the client's coordinate descriptions (``sgaps_env.descriptions``) split budgets with
``allocate_tile_counts`` over the tiles of ``tile_edges``.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, pixel_to_uv


def check_tiles(tiles, height: int, width: int) -> int:
    if isinstance(tiles, bool) or not isinstance(tiles, (int, np.integer)):
        raise ValueError(f"tiles must be an integer (the grid is tiles x tiles), got {tiles!r}")
    if tiles < 1:
        raise ValueError(f"tiles must be at least 1 (the grid is tiles x tiles), got {tiles}")
    if tiles > min(height, width):
        raise ValueError(f"tiles={tiles} is larger than the {height}x{width} frame: every tile needs at least one "
                         f"pixel, so use tiles <= {min(height, width)}")
    return int(tiles)


def tile_edges(tiles: int, height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Pixel boundaries of the ``tiles x tiles`` grid that partitions an ``height x width`` frame.

    Returns ``(row_edges, col_edges)``, each ``(tiles + 1,)`` int64 with ``edges[i] = i * size // tiles``.
    Tile ``t`` (row-major: ``r = t // tiles`` down, ``c = t % tiles`` across) is the pixels with
    ``row_edges[r] <= y < row_edges[r + 1]`` and ``col_edges[c] <= x < col_edges[c + 1]``.
    """
    tiles = check_tiles(tiles, height, width)
    index = np.arange(tiles + 1, dtype=np.int64)
    return index * height // tiles, index * width // tiles


def _largest_remainder(weights: np.ndarray, count: int) -> np.ndarray:
    """Split ``count`` into integers proportional to non-negative ``weights`` (sum > 0).

    Each entry gets the floor of its quota; the leftover units go to the largest fractional parts.
    When several entries tie for the last units, those units are spread evenly over the tied entries
    in index order (the ``j``-th of ``k`` units among ``m`` tied entries goes to the
    ``floor((j + 0.5) * m / k)``-th), so that, e.g., a uniform allocation of fewer points than tiles
    covers the whole frame rather than its top rows.
    """
    quotas = weights / weights.sum() * count
    counts = np.floor(quotas).astype(np.int64)
    leftover = count - int(counts.sum())
    if leftover > 0:
        remainders = quotas - counts
        order = np.argsort(-remainders, kind="stable")
        threshold = remainders[order[leftover - 1]]
        above = np.flatnonzero(remainders > threshold)
        tied = np.flatnonzero(remainders == threshold)
        need = leftover - len(above)
        counts[above] += 1
        counts[tied[((np.arange(need) + 0.5) * len(tied) / need).astype(np.int64)]] += 1
    return counts


def allocate_tile_counts(weights, count: int, tiles: int, height: int = FRAME_HEIGHT,
                         width: int = FRAME_WIDTH) -> np.ndarray:
    """How many of ``count`` points each tile gets under ``allocation_to_coords``: ``(tiles * tiles,)`` int64.

    Counts are proportional to ``weights`` by the largest-remainder method (all-zero weights mean
    equal weights); leftover points that tie on remainder are spread evenly over the tied tiles in
    tile order. A tile never gets more points than it has pixels: its overflow is shared among the
    tiles with room, again in proportion to their weights (equally when those are all zero), until
    every point is placed.
    """
    tiles = check_tiles(tiles, height, width)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= height * width:
        raise ValueError(f"count must be an integer in [1, {height * width}] (the pixels of a {height}x{width} "
                         f"frame), got {count!r}")
    cells = tiles * tiles
    array = np.asarray(weights, dtype=np.float64)
    if array.size != cells:
        raise ValueError(f"weights has {array.size} values (shape {array.shape}), expected tiles * tiles = {cells}: "
                         f"one weight per tile of the {tiles}x{tiles} grid, row-major")
    array = array.reshape(cells)
    if not np.isfinite(array).all():
        raise ValueError("weights contains NaN or infinite values; every weight must be a finite number >= 0")
    if (array < 0).any():
        raise ValueError(f"weights must be >= 0, got a minimum of {array.min():.4g}")
    row_edges, col_edges = tile_edges(tiles, height, width)
    capacity = np.outer(np.diff(row_edges), np.diff(col_edges)).reshape(cells)
    counts = np.zeros(cells, dtype=np.int64)
    remaining = int(count)
    while remaining > 0:  # each pass fills at least one tile or places every point, so it ends
        room = capacity - counts
        share_weights = np.where(room > 0, array, 0.0)
        if share_weights.sum() <= 0:
            share_weights = (room > 0).astype(np.float64)
        added = np.minimum(_largest_remainder(share_weights, remaining), room)
        counts += added
        remaining -= int(added.sum())
    return counts


def _cell_grid(count: int, height: int, width: int) -> tuple[int, int]:
    """Rows and columns (``rows <= height``, ``cols <= width``) of a near-square-celled grid of >= count cells."""
    cols = min(width, max(1, round(math.sqrt(count * width / height))))
    rows = math.ceil(count / cols)
    if rows > height:
        rows, cols = height, math.ceil(count / height)
    return rows, cols


@lru_cache(maxsize=4096)
def _tile_points(count: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct pixels spread over a ``height x width`` tile: ``(rows, cols)`` relative to its corner.

    The tile is cut into a grid of near-square cells, at most one per pixel row and column, and the
    pixel at each cell's centre is taken; surplus cells are dropped evenly (as in ``coords.uniform_grid``).
    """
    rows, cols = _cell_grid(count, height, width)
    # Cell pitch >= 1 pixel, so the centre pixels of different cells are different.
    cell_rows = np.floor((np.arange(rows) + 0.5) * height / rows).astype(np.int64)
    cell_cols = np.floor((np.arange(cols) + 0.5) * width / cols).astype(np.int64)
    total = rows * cols
    keep = np.round(np.linspace(0, total - 1, count)).astype(np.int64) if count > 1 else np.array([total // 2])
    y, x = cell_rows[keep // cols], cell_cols[keep % cols]
    y.setflags(write=False)
    x.setflags(write=False)
    return y, x


def allocation_to_coords(weights, count: int, tiles: int, height: int = FRAME_HEIGHT,
                         width: int = FRAME_WIDTH) -> np.ndarray:
    """Turn a budget allocation over a ``tiles x tiles`` grid into exactly ``count`` sampling coordinates.

    Args:
        weights: ``tiles * tiles`` finite weights >= 0, one per tile in row-major order (tile ``t`` is
            ``t // tiles`` down and ``t % tiles`` across; a ``(tiles, tiles)`` array is flattened).
            Only their ratios matter; all zeros means a uniform allocation.
        count: the number of coordinates, in ``[1, height * width]``.
        tiles: grid side ``K``, in ``[1, min(height, width)]``; the tiles partition the frame
            (see ``tile_edges``).
        height, width: frame size in pixels (the NES frame by default).

    Returns:
        ``(count, 2)`` float32 ``(u, v)`` pixel centres in [0, 1] (``sgaps_env.coords`` convention),
        grouped by tile in tile order. Tile ``t`` gets ``allocate_tile_counts(...)[t]`` points: counts
        proportional to the weights by the largest-remainder method, capped at the tile's pixel count
        with the overflow redistributed. Inside a tile the points are the centre pixels of a
        near-square grid of cells, so they are well spread and distinct. The map is deterministic and,
        because no tile gets more points than it has pixels, all ``count`` pixels are distinct.

    Raises:
        ValueError: for a wrong number of weights, negative or non-finite weights, a ``count``
            outside ``[1, height * width]`` or ``tiles`` outside ``[1, min(height, width)]``.
    """
    counts = allocate_tile_counts(weights, count, tiles, height, width)
    row_edges, col_edges = tile_edges(tiles, height, width)
    all_rows, all_cols = [], []
    for tile in np.flatnonzero(counts):
        r, c = divmod(int(tile), tiles)
        y, x = _tile_points(int(counts[tile]), int(row_edges[r + 1] - row_edges[r]),
                            int(col_edges[c + 1] - col_edges[c]))
        all_rows.append(y + row_edges[r])
        all_cols.append(x + col_edges[c])
    return pixel_to_uv(np.concatenate(all_rows), np.concatenate(all_cols), height, width)
