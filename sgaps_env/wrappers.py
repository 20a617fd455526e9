"""Single-space views of ``SGAPS-SMB-v0`` for standard RL libraries such as stable-baselines3.

The environment's action is a ``Dict`` (buttons *and* sampling coordinates), which stable-baselines3
rejects. Each wrapper here fixes one half of the action so that an agent learns the other half:

* ``PlayerLearningWrapper``: the sampling pattern is fixed; the agent learns to press buttons.
* ``SamplerLearningWrapper``: the player is fixed; the agent learns where to spend its pixel budget,
  rewarded by the reconstruction scorer.

Both return the same *cleaned* observation: a single-level ``Dict`` that stable-baselines3's
``MultiInputPolicy`` accepts, in which the masked and padded entries of ``state`` (the env's
sentinel, -999 by default) are replaced by 0.0, because huge sentinel values wreck neural-network
inputs. ``state_mask`` still says which entries are valid.

``allocation_to_coords`` is the pure, deterministic map from a budget allocation over a
``K x K`` tile grid to sampling coordinates that ``SamplerLearningWrapper`` uses.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, PATTERNS, RANDOM_PATTERNS, make_pattern, pixel_to_uv
from sgaps_env.env import SGAPSSuperMarioBrosEnv
from sgaps_env.player import Player, as_player

#: What ``SamplerLearningWrapper``'s fixed player is shown.
PLAYER_OBSERVATIONS = ("env", "cleaned")


# --- the budget allocation -> coordinates map ------------------------------------------------------


def _check_tiles(tiles, height: int, width: int) -> int:
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
    tiles = _check_tiles(tiles, height, width)
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
    tiles = _check_tiles(tiles, height, width)
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


# --- shared: the wrapped env and the cleaned observation -------------------------------------------


def clean_observation(observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The env's observation with masked and padded ``state`` entries (``state_mask == 0``) set to 0.0:
    what both wrappers return, and what a policy trained on them must be shown."""
    mask = observation["state_mask"]
    return {
        "pixels": observation["pixels"],
        "state": np.where(mask > 0, observation["state"], np.float32(0.0)).astype(np.float32, copy=False),
        "state_mask": mask,
    }



class _CleanObservationWrapper(gym.Wrapper):
    """Finds the SGAPS env under ``env`` and builds the cleaned observation space."""

    def __init__(self, env: gym.Env):
        base = self._sgaps_env(env)
        if not (isinstance(env.action_space, spaces.Dict) and set(env.action_space.spaces) == {"buttons", "coords"}
                and isinstance(env.observation_space, spaces.Dict)
                and set(env.observation_space.spaces) == {"pixels", "state", "state_mask"}):
            raise ValueError(f"{type(self).__name__} needs the env's own Dict action and observation spaces, but a "
                             "wrapper in between changed them: apply this wrapper directly to gym.make(...)")
        super().__init__(env)
        self.sample_count = base.sample_count
        reader = base.state_reader
        count = len(reader.fields)
        maskable = np.ones(reader.max_state_dim, dtype=bool)
        maskable[:count] = [field.active_flag is not None for field in reader.fields]
        # Padding is always 0 once cleaned; [-1, 1] keeps its dimensions non-degenerate.
        low = np.full(reader.max_state_dim, -1.0, dtype=np.float32)
        high = np.full(reader.max_state_dim, 1.0, dtype=np.float32)
        low[:count] = [field.low for field in reader.fields]
        high[:count] = [field.high for field in reader.fields]
        low[:count] = np.where(maskable[:count], np.minimum(low[:count], 0.0), low[:count])
        high[:count] = np.where(maskable[:count], np.maximum(high[:count], 0.0), high[:count])
        self.observation_space = spaces.Dict({
            "pixels": env.observation_space["pixels"],
            "state": spaces.Box(low, high, dtype=np.float32),
            "state_mask": env.observation_space["state_mask"],
        })

    @classmethod
    def _sgaps_env(cls, env) -> SGAPSSuperMarioBrosEnv:
        """``env.unwrapped`` after checking that it is an SGAPS env."""
        if not isinstance(env, gym.Env):
            raise ValueError(f"env must be a gymnasium.Env, got {type(env).__name__}: create it with "
                             "gym.make('SGAPS-SMB-v0', ...) or sgaps_env.SGAPSSuperMarioBrosEnv(...)")
        base = env.unwrapped
        if not isinstance(base, SGAPSSuperMarioBrosEnv):
            raise ValueError(f"{cls.__name__} wraps SGAPS-SMB-v0, but env.unwrapped is "
                             f"{type(base).__name__}: create it with gym.make('SGAPS-SMB-v0', ...)")
        return base

    @property
    def base_env(self) -> SGAPSSuperMarioBrosEnv:
        """The SGAPS environment at the bottom of the wrapper stack."""
        return self.env.unwrapped

    @staticmethod
    def clean(observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The env's observation with masked and padded ``state`` entries (``state_mask == 0``) set to 0.0."""
        return clean_observation(observation)


# --- wrapper 1: learn the player ------------------------------------------------------------------


class PlayerLearningWrapper(_CleanObservationWrapper, gym.utils.RecordConstructorArgs):
    """``SGAPS-SMB-v0`` with a fixed sampling pattern: the agent only chooses buttons.

    ## Action space

    | space | meaning |
    |---|---|
    | `Discrete(len(button set))` | the env's `buttons` action (index into its button set) |

    The coordinates of every step, and of the first frame after ``reset``, come from ``pattern``.

    ## Observation space

    ``Dict``:

    | key | space | meaning |
    |---|---|---|
    | `pixels` | `Box(0, 1, (N, 2 + C), float32)` | the env's sampled pixels, rows `(u, v, value...)`, unchanged |
    | `state` | `Box(low, high, (max_state_dim,), float32)` | the env's state vector with every entry whose `state_mask` is 0 (inactive enemy slots, padding) set to 0.0 instead of the sentinel; `low`/`high` are the fields' ranges widened to include 0 (padding: [-1, 1]) |
    | `state_mask` | `Box(0, 1, (max_state_dim,), float32)` | the env's mask, unchanged: 1 where `state` holds a valid value |

    ## Rewards

    The wrapped env's reward, unchanged: the game reward, or the scorer's value when the env was made
    with ``reward_mode="reconstruction"``. ``info`` is the env's.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | `env` | | an `SGAPS-SMB-v0` env, direct or from `gym.make` (found via `env.unwrapped`) |
    | `pattern` | `"uniform_grid"` | a name from `sgaps_env.coords.PATTERNS`. `"random"` and `"stratified"` are redrawn every step (and at reset) from the wrapped env's `np_random`, so seeded resets stay reproducible; `"uniform_grid"` and `"checkerboard"` are computed once |

    Raises ``ValueError`` for an unknown pattern or an env that is not ``SGAPS-SMB-v0``.
    """

    def __init__(self, env: gym.Env, pattern: str = "uniform_grid"):
        if not isinstance(pattern, str) or pattern not in PATTERNS:
            raise ValueError(f"unknown sampling pattern {pattern!r}: expected one of {sorted(PATTERNS)}")
        gym.utils.RecordConstructorArgs.__init__(self, pattern=pattern)
        super().__init__(env)
        self.pattern = pattern
        self.redraws_pattern = pattern in RANDOM_PATTERNS
        self._fixed_coords = None if self.redraws_pattern else make_pattern(pattern, self.sample_count)
        self.action_space = env.action_space["buttons"]

    def _coords(self) -> np.ndarray:
        if self.redraws_pattern:
            return make_pattern(self.pattern, self.sample_count, self.base_env.np_random)
        return self._fixed_coords.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        if "coords" in options:  # the caller's explicit first-frame coordinates win
            observation, info = self.env.reset(seed=seed, options=options)
        elif not self.redraws_pattern:
            options["coords"] = self._fixed_coords.copy()
            observation, info = self.env.reset(seed=seed, options=options)
        else:
            # The draw must come from the rng *after* the seeded reset: let the env draw its first
            # frame's pattern itself, as it does for its own initial_pattern.
            base = self.base_env
            previous = base.initial_pattern
            base.initial_pattern = self.pattern
            try:
                observation, info = self.env.reset(seed=seed, options=options)
            finally:
                base.initial_pattern = previous
        return self.clean(observation), info

    def step(self, action):
        buttons = np.asarray(action)
        if buttons.size != 1 or not np.issubdtype(buttons.dtype, np.integer):
            raise ValueError(f"action must be a single integer button index in [0, {self.action_space.n}), "
                             f"got {action!r}")
        observation, reward, terminated, truncated, info = self.env.step(
            {"buttons": int(buttons.reshape(())), "coords": self._coords()})
        return self.clean(observation), reward, terminated, truncated, info


# --- wrapper 2: learn the sampler -----------------------------------------------------------------


class SamplerLearningWrapper(_CleanObservationWrapper, gym.utils.RecordConstructorArgs):
    """``SGAPS-SMB-v0`` with a fixed player: the agent only chooses where to spend its pixel budget.

    ## Action space

    | space | meaning |
    |---|---|
    | `Box(0, 1, (K * K,), float32)` | a weight per tile of a `K x K` grid over the frame (row-major: tile `t` is `t // K` down, `t % K` across) |

    The weights become exactly ``N = sample_count`` coordinates through ``allocation_to_coords``:
    counts proportional to the weights (largest remainder; all zeros means uniform), capped at each
    tile's pixel count with the overflow redistributed, placed as a well-spread grid of distinct
    pixels inside each tile (observation rows are grouped by tile, in tile order). Only the weights'
    ratios matter; negative or non-finite weights raise ``ValueError`` (stable-baselines3 clips its
    actions into the box). The first frame after ``reset`` is sampled with the uniform allocation.
    The buttons come from ``player``, which sees the previous step's observation and info.

    ## Observation space

    ``Dict``:

    | key | space | meaning |
    |---|---|---|
    | `pixels` | `Box(0, 1, (N, 2 + C), float32)` | the env's sampled pixels, rows `(u, v, value...)`, unchanged |
    | `state` | `Box(low, high, (max_state_dim,), float32)` | the env's state vector with every entry whose `state_mask` is 0 (inactive enemy slots, padding) set to 0.0 instead of the sentinel; `low`/`high` are the fields' ranges widened to include 0 (padding: [-1, 1]) |
    | `state_mask` | `Box(0, 1, (max_state_dim,), float32)` | the env's mask, unchanged: 1 where `state` holds a valid value |

    The agent sees the pixels at the coordinates its action chose, on the frame that step produced.

    ## Rewards

    The scorer's value for the step's samples, ``info["reconstruction_score"]`` (e.g. PSNR in dB for
    ``models.scoring.BaselineScorer``), whatever the env's ``reward_mode``. The game reward stays in
    ``info["game_reward"]``; ``info["player_action"]`` is the button index the player chose.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | `env` | | an `SGAPS-SMB-v0` env made with a scorer, e.g. `gym.make("SGAPS-SMB-v0", scorer=BaselineScorer())` (found via `env.unwrapped`) |
    | `player` | | anything `sgaps_env.player.as_player` accepts: a `Player` (`reset(seed)`, `act(observation, info) -> int`) or a callable `observation -> int`. `player.reset(seed)` is called on every `reset(seed=...)` |
    | `tiles` | 8 | grid side `K`, in `[1, min(240, 256)]` |
    | `player_observation` | `"env"` | what the player is shown: `"env"` (the env's own observation, sentinels included: what `agents.players` expect) or `"cleaned"` (this wrapper's observation, e.g. for a policy trained with `PlayerLearningWrapper`) |

    Raises ``ValueError`` when the env has no scorer, ``player`` is neither a Player nor callable,
    ``tiles`` is out of range, or the env is not ``SGAPS-SMB-v0``.
    """

    def __init__(self, env: gym.Env, player: Player | Callable[[dict[str, np.ndarray]], int], tiles: int = 8,
                 player_observation: str = "env"):
        if self._sgaps_env(env).scorer is None:
            raise ValueError("SamplerLearningWrapper is rewarded by the reconstruction score, but the env has no "
                             "scorer: create the env with scorer=models.scoring.BaselineScorer(), e.g. "
                             "gym.make('SGAPS-SMB-v0', scorer=BaselineScorer())")
        try:
            self.player = as_player(player)
        except TypeError:
            raise ValueError(f"player must be a Player (with reset(seed) and act(observation, info) -> int) or a "
                             f"callable observation -> int, got {player!r}") from None
        if player_observation not in PLAYER_OBSERVATIONS:
            raise ValueError(f"unknown player_observation {player_observation!r}: expected one of "
                             f"{PLAYER_OBSERVATIONS}")
        self.tiles = _check_tiles(tiles, FRAME_HEIGHT, FRAME_WIDTH)
        gym.utils.RecordConstructorArgs.__init__(self, player=player, tiles=tiles,
                                                 player_observation=player_observation)
        super().__init__(env)
        self.player_observation = player_observation
        self.action_space = spaces.Box(0.0, 1.0, (self.tiles * self.tiles,), np.float32)
        self._uniform_coords = allocation_to_coords(np.zeros(self.tiles * self.tiles), self.sample_count, self.tiles)
        self._player_view: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None

    def coords_for(self, action) -> np.ndarray:
        """The ``(N, 2)`` coordinates that ``action`` (tile weights) samples."""
        return allocation_to_coords(action, self.sample_count, self.tiles)

    def _remember(self, observation: dict[str, np.ndarray], cleaned: dict[str, np.ndarray], info: dict[str, Any]):
        self._player_view = (cleaned if self.player_observation == "cleaned" else observation, dict(info))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        options.setdefault("coords", self._uniform_coords.copy())
        observation, info = self.env.reset(seed=seed, options=options)
        self.player.reset(seed)
        cleaned = self.clean(observation)
        self._remember(observation, cleaned, info)
        return cleaned, info

    def step(self, action):
        if self._player_view is None:
            raise ValueError("call reset() before step()")
        coords = self.coords_for(action)
        buttons = int(self.player.act(*self._player_view))
        observation, _, terminated, truncated, info = self.env.step({"buttons": buttons, "coords": coords})
        info["player_action"] = buttons
        cleaned = self.clean(observation)
        self._remember(observation, cleaned, info)
        return cleaned, float(info["reconstruction_score"]), terminated, truncated, info

