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

``SamplerLearningWrapper`` turns its action into coordinates with ``sgaps_env.tiles.allocation_to_coords``.
"""
from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH
from sgaps_env.env import SGAPSSuperMarioBrosEnv
from sgaps_env.player import Player, as_player
from sgaps_env.sampler import PatternSampler
from sgaps_env.tiles import allocation_to_coords, check_tiles

#: What ``SamplerLearningWrapper``'s fixed player is shown.
PLAYER_OBSERVATIONS = ("env", "cleaned")


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
    | `pattern` | `"uniform_grid"` | a name from `sgaps_env.coords.PATTERNS`, drawn by `sgaps_env.sampler.PatternSampler` (`self.sampler`): `"random"` and `"stratified"` are redrawn every step (and at reset) from the sampler's own generator, seeded by `reset(seed=...)` and continued by unseeded resets, so seeded runs are reproducible and sample what `Rollout` with `PatternSampler(pattern, N)` and the same seed samples; `"uniform_grid"` and `"checkerboard"` are the same points every step |

    Raises ``ValueError`` for an unknown pattern or an env that is not ``SGAPS-SMB-v0``.
    """

    def __init__(self, env: gym.Env, pattern: str = "uniform_grid"):
        self._sgaps_env(env)  # an env that is not SGAPS-SMB-v0 is named before the pattern is checked
        self.sampler = PatternSampler(pattern, env.unwrapped.sample_count)
        gym.utils.RecordConstructorArgs.__init__(self, pattern=pattern)
        super().__init__(env)
        self.pattern = pattern
        self.action_space = env.action_space["buttons"]
        self._last: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None

    @property
    def redraws_pattern(self) -> bool:
        """Whether every step gets a new draw of the pattern (``random`` and ``stratified``)."""
        return self.sampler.redraw

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if options is None or isinstance(options, dict):  # anything else: the env explains what options are
            options = {"coords": self.sampler.reset(seed), **(options or {})}  # the caller's own coords win
        observation, info = self.env.reset(seed=seed, options=options)
        self._last = (observation, info)
        return self.clean(observation), info

    def step(self, action):
        buttons = np.asarray(action)
        if buttons.size != 1 or not np.issubdtype(buttons.dtype, np.integer):
            raise ValueError(f"action must be a single integer button index in [0, {self.action_space.n}), "
                             f"got {action!r}")
        if self._last is None:
            raise ValueError("call reset() before step()")
        coords = self.sampler.next_coords(*self._last)
        observation, reward, terminated, truncated, info = self.env.step(
            {"buttons": int(buttons.reshape(())), "coords": coords})
        self._last = (observation, info)
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
        self.tiles = check_tiles(tiles, FRAME_HEIGHT, FRAME_WIDTH)
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

