"""``SGAPS-SMB-v0``: Super Mario Bros seen through a few hundred sampled pixels."""
from __future__ import annotations

import math
import re
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gym_super_mario_bros import SuperMarioBrosEnv

from sgaps_env.buttons import combo_to_byte, resolve_button_set
from sgaps_env.coords import (COLOR_CHANNELS, FRAME_HEIGHT, FRAME_WIDTH, PATTERNS, channels_for, extract_pixels,
                              make_pattern, validate_coords)
from sgaps_env.render import HumanViewer
from sgaps_env.state import DEFAULT_MAX_STATE_DIM, DEFAULT_SENTINEL, StateVectorReader
from sgaps_env.worlds import HELD_OUT_STAGES, TRAINING_STAGES

#: The reward a step can return.
REWARD_MODES = ("game", "reconstruction")

#: The keys ``reset(options=...)`` understands.
RESET_OPTIONS = ("coords", "noops")

#: The attributes of gym-super-mario-bros' wrapper that its reward and termination read across
#: frames; ``clone_state`` keeps them with the emulator so a restored state steps exactly as before.
_GAME_TRACKERS = ("_time_last", "_x_position_max", "_score_last", "_coins_last", "_status_last",
                  "_completion_rewarded", "_last_reward_components", "_last_reward_unclipped",
                  "_last_reward_clipped")

#: Where to look for a scorer when ``reward_mode="reconstruction"`` is asked for without one.
_SCORER_HINT = ("e.g. scorer=models.scoring.SPTScorer() (the shipped SPT; it reconstructs color='rgb' samples) or "
                "scorer=models.scoring.BaselineScorer('hold')")

#: A reconstruction scorer: ``scorer(frame, pixels, state, state_mask) -> float``, higher is better.
#: ``frame`` is the true ``(240, 256, 3)`` uint8 frame the pixels were sampled from.
Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]

_STAGE_PATTERN = re.compile(r"^\s*([1-8])\s*-\s*([1-4])\s*$")


def parse_stage(stage: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"1-1"`` or ``(1, 1)`` -> ``(world, stage)``; ``None`` (the whole game from 1-1) stays ``None``."""
    if stage is None:
        return None
    if isinstance(stage, str):
        match = _STAGE_PATTERN.match(stage)
        if match:
            return int(match.group(1)), int(match.group(2))
    elif (isinstance(stage, (tuple, list)) and len(stage) == 2
          and all(isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)) for x in stage)):
        world, level = int(stage[0]), int(stage[1])
        if 1 <= world <= 8 and 1 <= level <= 4:
            return world, level
    raise ValueError(f"unknown stage {stage!r}: expected 'W-S' with world W in 1..8 and stage S in 1..4 "
                     "(e.g. '1-1' or (1, 1)), or None for the whole game from 1-1")


#: The 32 stages of the game as ``"W-S"`` names, in order.
ALL_STAGES = tuple(f"{world}-{stage}" for world in range(1, 9) for stage in range(1, 5))


def stage_names(stages: list[str], allow_game: bool = False) -> list[str | None]:
    """Stage names as a user writes them -> distinct ``"W-S"`` names in order; ``"all"`` is the 32 stages,
    ``"train-worlds"`` the 16 of worlds 1-4 and ``"held-out-worlds"`` the 16 of worlds 5-8 (``sgaps_env.worlds``).

    With ``allow_game``, ``"game"`` (the whole game from 1-1) becomes None. Unknown names raise ValueError.
    """
    groups = {"all": ALL_STAGES, "train-worlds": TRAINING_STAGES, "held-out-worlds": HELD_OUT_STAGES}
    result: list[str | None] = []
    for stage in stages:
        if stage in groups:
            result.extend(groups[stage])
        elif stage == "game" and allow_game:
            result.append(None)
        else:
            world, level = parse_stage(stage)
            result.append(f"{world}-{level}")
    return list(dict.fromkeys(result))


def _check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a real bool: truthiness would read the string ``"False"`` as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {type(value).__name__} {value!r}: pass a bool "
                         "(a string such as 'False' or 'no' is not read as one)")
    return bool(value)


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; bools, floats and strings are refused, not converted."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value}")
    return int(value)


def _check_real(name: str, value: Any, expected: str) -> float:
    """``value`` as a finite float; bools, complex numbers and strings are refused, not converted."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return float(value)


def _check_choice(name: str, value: Any, choices) -> Any:
    """``value`` if it is one of ``choices`` (compared only when hashable, so a list gets this error too)."""
    known = sorted(choice for choice in choices if choice is not None)
    if not isinstance(value, (str, type(None))) or value not in choices:
        extra = " or None" if None in choices else ""
        raise ValueError(f"unknown {name} {value!r}: expected one of {known}{extra}")
    return value


class SGAPSSuperMarioBrosEnv(gym.Env):
    """Super Mario Bros where the agent sees only the pixels it asked for, plus a RAM state vector.

    ## Description

    Each step the agent presses a button combination *and* chooses the
    ``sample_count`` coordinates at which the frame that this step produces is
    sampled. The observation is those sampled pixels and a game-state vector
    read from the NES RAM (player, enemies, camera, level, HUD values) that
    describes the same frame. The full frame is never part of the observation;
    ``return_frame=True`` adds a copy of it to ``info`` for recording and
    scoring. The game is Super Mario Bros (NES) emulated by nes-py through
    gym-super-mario-bros, with its ROM as shipped there.

    ## Action space

    ``Dict``:

    | key | space | meaning |
    |---|---|---|
    | `buttons` | `Discrete(len(button set))` | index into the button set (default `"simple"`: NOOP, right, right+A, right+B, right+A+B, A, left) |
    | `coords` | `Box(0, 1, (sample_count, 2), float32)` | `(u, v)` where the frame produced by this step is sampled; `u = x / 256` horizontal, `v = y / 240` vertical (see `sgaps_env.coords`) |

    ## Observation space

    ``Dict``:

    | key | space | meaning |
    |---|---|---|
    | `pixels` | `Box(0, 1, (sample_count, 2 + C), float32)` | rows `(u, v, value...)`: the centre of each pixel read and its value; `C = 1` (BT.601 luma) for `color="gray"`, `C = 3` for `"rgb"` |
    | `state` | `Box(low, high, (max_state_dim,), float32)` | the fields of `sgaps_env.STATE_FIELDS` (58 of them; see `docs/state_vector.md`), then `sentinel` padding |
    | `state_mask` | `Box(0, 1, (max_state_dim,), float32)` | 1 where `state` holds a valid value; 0 for padding and for the fields of inactive enemy slots |

    The state describes the frame the pixels came from: the NES draws a frame
    from the RAM as it stood one frame earlier, so the RAM is read just before
    the last emulated frame of the step.

    ## Rewards

    ``reward_mode="game"`` (default): gym-super-mario-bros' reward summed over
    the step's frames (progress to the right, clock penalty, score, coins,
    power-up, stage clear +50, death -25). ``reward_mode="reconstruction"``:
    the value the ``scorer`` gives this step's sampled pixels; it needs a
    scorer (e.g. ``models.scoring.SPTScorer()`` for ``color="rgb"`` or
    ``models.scoring.BaselineScorer("hold")``), because the environment never
    loads a checkpoint itself. With a scorer set, ``info`` carries both
    ``game_reward`` and ``reconstruction_score``.

    ## Starting state

    The emulator is restored to the first playable frame of the stage (or of
    1-1 for the whole game), then ``1 + U{0, noop_max}`` no-op frames are run,
    drawn from the environment's ``np_random``: the emulator itself is
    deterministic, so this is where seeds make sessions differ. The first
    frame is sampled at ``initial_pattern``. ``reset(options=...)`` takes two
    keys, and any other raises ``ValueError``:

    | option | meaning |
    |---|---|
    | `coords` | the first frame's `(sample_count, 2)` `(u, v)` coordinates instead of `initial_pattern` |
    | `noops` | the number of extra no-op frames (an int in [0, 10000]) instead of the random draw; `info["frame_index"]` after reset is `1 + noops` (demonstrations in `agents.demonstrations` record theirs) |

    ## Snapshots

    ``state = env.clone_state()`` and ``env.restore_state(state)`` save and
    restore the emulator and every counter a step reads, so stepping on from a
    restored state gives exactly what stepping on from the original did (as
    ALE's ``cloneState``). Snapshots live in this process only (nes-py's
    native state cannot be pickled): to carry a trajectory elsewhere, keep its
    no-op start and button indices and replay them from ``reset``.

    ## Episode end

    Terminated when Mario dies or reaches the flag (single stage), or at game
    over (``stage=None``: the whole game, three lives). Never truncated by the
    environment itself; pass ``max_episode_steps`` to ``gym.make`` for a time
    limit. Stepping after the end raises ``ValueError``: call ``reset``.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | `stage` | `None` | `"W-S"` (e.g. `"1-1"`) for one stage, `None` for the whole game from 1-1. Ids `SGAPS-SMB-W-S-v0` fix it. |
    | `sample_count` | 500 | pixels sampled per frame (N), an int in [1, 61440] |
    | `color` | `"gray"` | `"gray"` (BT.601 luma) or `"rgb"` |
    | `frame_skip` | 4 | NES frames per step (an int >= 1); the same buttons are held for all of them |
    | `buttons` | `"simple"` | `"simple"`, `"right_only"`, `"complex"` or a list of combos such as `[["right", "A"]]` |
    | `max_state_dim` | 64 | length of `state` and `state_mask`, an int in [58, 4096] |
    | `sentinel` | -999.0 | value of padded and masked state entries (a finite number) |
    | `initial_pattern` | `"uniform_grid"` | fixed pattern for the first frame: `uniform_grid`, `random`, `stratified`, `checkerboard` |
    | `noop_max` | 30 | largest number of extra random no-op frames at reset (an int >= 0) |
    | `repeat_action_probability` | 0.0 | per-frame chance in [0, 1) that the previous frame's buttons are held instead (sticky actions, as in ALE v5) |
    | `clip_coords` | `False` | clip out-of-range coordinates into [0, 1] instead of raising (a bool) |
    | `return_frame` | `False` | put a copy of the true `(240, 256, 3)` uint8 frame in `info["frame"]` (a bool) |
    | `scorer` | `None` | `scorer(frame, pixels, state, state_mask) -> float`, called every step; its `reset()`, if any, at every reset |
    | `reward_mode` | `"game"` | `"game"` or `"reconstruction"` (needs a `scorer`, e.g. `models.scoring.SPTScorer()` with `color="rgb"`) |
    | `render_mode` | `None` | `"rgb_array"` (the true frame) or `"human"` (a pygame window: true frame beside the samples) |

    Every argument is checked when the environment is made: a value of the wrong type (a string
    for a bool, a bool or float for an int, a string or complex number for a float) or out of
    range raises ``ValueError`` naming the argument, the value given and what is expected.

    ## Info

    Every step: `frame_index` (NES frames since reset, including the game's own
    skipped animations), `world`, `stage`, `x_pos` (Mario's x in the level),
    `flag_get`, `game_reward`; plus `reconstruction_score` with a scorer and
    `frame` with `return_frame`. `game_info()` returns gym-super-mario-bros'
    full info dict on demand (it is slow to build, so not every step).

    ## Version history

    * v0: initial version (gym-super-mario-bros 9.1, nes-py 9.0); before the first release the state
      fields `player_sprite`, `area_type` and `color_rotation` were appended (indices 41-43).
      Also before the first release: `reward_mode="reconstruction"` stopped loading the shipped SPT
      when no `scorer` is given (it raises `ValueError`: pass one), arguments of the wrong type are
      refused instead of converted, `max_state_dim` is at most 4096, and unknown `reset` options
      are refused. Added without changing any session: the `noops` reset option and
      `clone_state`/`restore_state`.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 15}

    def __init__(
        self,
        stage: str | tuple[int, int] | None = None,
        sample_count: int = 500,
        color: str = "gray",
        frame_skip: int = 4,
        buttons: str | list[list[str]] = "simple",
        max_state_dim: int = DEFAULT_MAX_STATE_DIM,
        sentinel: float = DEFAULT_SENTINEL,
        initial_pattern: str = "uniform_grid",
        noop_max: int = 30,
        repeat_action_probability: float = 0.0,
        clip_coords: bool = False,
        return_frame: bool = False,
        scorer: Scorer | None = None,
        reward_mode: str = "game",
        render_mode: str | None = None,
    ):
        self.stage = parse_stage(stage)
        sample_count = _check_int("sample_count", sample_count, 1, FRAME_HEIGHT * FRAME_WIDTH)
        color = _check_choice("color", color, COLOR_CHANNELS)
        channels = channels_for(color)
        frame_skip = _check_int("frame_skip", frame_skip, 1, 10_000)
        initial_pattern = _check_choice("initial_pattern", initial_pattern, PATTERNS)
        noop_max = _check_int("noop_max", noop_max, 0, 10_000)
        repeat_action_probability = _check_real("repeat_action_probability", repeat_action_probability,
                                                "a number in [0, 1)")
        if not 0.0 <= repeat_action_probability < 1.0:
            raise ValueError(f"repeat_action_probability must be a number in [0, 1), got {repeat_action_probability!r}")
        clip_coords = _check_bool("clip_coords", clip_coords)
        return_frame = _check_bool("return_frame", return_frame)
        reward_mode = _check_choice("reward_mode", reward_mode, REWARD_MODES)
        render_mode = _check_choice("render_mode", render_mode, (*self.metadata["render_modes"], None))
        if scorer is not None and not callable(scorer):
            raise ValueError(f"scorer must be callable(frame, pixels, state, state_mask) -> float or None, got "
                             f"{scorer!r}: {_SCORER_HINT}")
        if reward_mode == "reconstruction" and scorer is None:
            raise ValueError(f"reward_mode='reconstruction' needs a scorer: the environment does not load a "
                             f"reconstructor itself, so pass one, {_SCORER_HINT}")

        self.sample_count = sample_count
        self.color = color
        self.frame_skip = frame_skip
        self.button_combos = resolve_button_set(buttons)
        self._button_bytes = [combo_to_byte(combo) for combo in self.button_combos]
        self.initial_pattern = initial_pattern
        self.noop_max = noop_max
        self.repeat_action_probability = repeat_action_probability
        self.clip_coords = clip_coords
        self.return_frame = return_frame
        self.scorer = scorer
        self.reward_mode = reward_mode
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": 60 / self.frame_skip}
        self.state_reader = StateVectorReader(max_state_dim, sentinel)  # checks both, before the emulator starts
        self._config = {
            "stage": None if self.stage is None else f"{self.stage[0]}-{self.stage[1]}",
            "sample_count": self.sample_count, "color": color, "frame_skip": self.frame_skip,
            "buttons": [list(combo) for combo in self.button_combos], "max_state_dim": self.state_reader.max_state_dim,
            "sentinel": self.state_reader.sentinel, "initial_pattern": initial_pattern, "noop_max": self.noop_max,
            "repeat_action_probability": self.repeat_action_probability, "clip_coords": self.clip_coords,
        }

        state_low, state_high = self.state_reader.bounds
        self.observation_space = spaces.Dict({
            "pixels": spaces.Box(0.0, 1.0, (self.sample_count, 2 + channels), np.float32),
            "state": spaces.Box(state_low, state_high, dtype=np.float32),
            "state_mask": spaces.Box(0.0, 1.0, (self.state_reader.max_state_dim,), np.float32),
        })
        self.action_space = spaces.Dict({
            "buttons": spaces.Discrete(len(self.button_combos)),
            "coords": spaces.Box(0.0, 1.0, (self.sample_count, 2), np.float32),
        })

        self._game = SuperMarioBrosEnv(target=self.stage)
        self._ram = self._game.ram
        self._screen = self._game.screen
        # The screen shows the RAM as it was one frame earlier, so every frame advance (ours and
        # the game wrapper's own animation skips) first snapshots the RAM it is about to render.
        self._ram_before_frame = np.zeros_like(self._ram)
        self._native_advance = self._game._env.frame_advance
        self._game._frame_advance = self._advance
        self._frame_index = 0
        self._last_byte = 0
        self._episode_over = True
        self._viewer = None
        self._last_pixels = np.zeros((0, 2 + channels), dtype=np.float32)

    # --- emulation -----------------------------------------------------------------------------

    def _advance(self, byte: int) -> None:
        np.copyto(self._ram_before_frame, self._ram)
        self._native_advance(byte)
        self._frame_index += 1

    def _copy_screen(self) -> np.ndarray:
        """A contiguous ``(240, 256, 3)`` RGB copy of the shared screen buffer.

        The buffer is BGRx and nes-py's view of it runs the channels backwards; copying that view
        element by element takes about 6x as long as copying it one channel plane at a time.
        """
        frame = np.empty(self._screen.shape, np.uint8)
        for channel in range(frame.shape[2]):
            frame[..., channel] = self._screen[..., channel]
        return frame

    def _observe(self, coords: np.ndarray) -> dict[str, np.ndarray]:
        state, state_mask = self.state_reader.read(self._ram_before_frame)
        return {"pixels": extract_pixels(self._screen, coords, self.color), "state": state, "state_mask": state_mask}

    def _info(self, observation: dict[str, np.ndarray], game_reward: float) -> dict[str, Any]:
        game = self._game
        info = {
            "frame_index": self._frame_index,
            "world": game._world,
            "stage": game._stage,
            "x_pos": game._x_position,
            "flag_get": game._flag_get,
            "game_reward": game_reward,
        }
        if self.scorer is not None or self.return_frame:
            frame = self._copy_screen()
            if self.return_frame:
                info["frame"] = frame
            if self.scorer is not None:
                info["reconstruction_score"] = float(self.scorer(frame, observation["pixels"],
                                                                 observation["state"], observation["state_mask"]))
        return info

    def _parse_action(self, action) -> tuple[int, np.ndarray]:
        try:
            buttons, coords = action["buttons"], action["coords"]
        except (KeyError, TypeError, IndexError):
            raise ValueError(f"action must be a dict with keys 'buttons' and 'coords', got {type(action).__name__}: "
                             f"use {{'buttons': int in [0, {len(self.button_combos)}), 'coords': "
                             f"float32 array of shape ({self.sample_count}, 2)}}") from None
        if isinstance(action, dict) and len(action) > 2:
            extra = sorted(map(repr, set(action) - {"buttons", "coords"}))
            raise ValueError(f"unknown action key(s) {', '.join(extra)}: an action has exactly the keys 'buttons' "
                             "and 'coords'")
        scalar = np.asarray(buttons)
        if scalar.ndim != 0 or not np.issubdtype(scalar.dtype, np.integer):
            raise ValueError(f"buttons must be a single integer index, got {buttons!r}")
        index = int(scalar)
        if not 0 <= index < len(self.button_combos):
            names = ", ".join(f"{i}: {'+'.join(combo)}" for i, combo in enumerate(self.button_combos))
            raise ValueError(f"unknown button index {index}: this environment's button set has "
                             f"{len(self.button_combos)} entries ({names})")
        return index, validate_coords(coords, self.sample_count, self.clip_coords)

    def _reset_coords(self, options: Any) -> np.ndarray | None:
        """The first frame's coordinates from ``reset``'s ``options`` (None: draw ``initial_pattern``)."""
        if options is None:
            return None
        if not isinstance(options, dict):
            raise ValueError(f"options must be a dict or None, got {type(options).__name__} {options!r}: "
                             "e.g. reset(options={'coords': <(sample_count, 2) float32 (u, v)>})")
        unknown = sorted(map(repr, set(options) - set(RESET_OPTIONS)))
        if unknown:
            raise ValueError(f"unknown reset option(s) {', '.join(unknown)}: the known options are "
                             f"{list(RESET_OPTIONS)} (the first frame's (u, v) coordinates; the number of no-op frames)")
        if "coords" not in options:
            return None
        return validate_coords(options["coords"], self.sample_count, self.clip_coords)

    def _reset_noops(self, options: Any) -> int | None:
        """The no-op count from ``reset``'s ``options`` (None: draw it); ``options`` is already checked."""
        if not options or "noops" not in options:
            return None
        return _check_int("reset option 'noops'", options["noops"], 0, 10_000)

    # --- Gymnasium API -------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if self._game is None:
            raise ValueError("the environment is closed; create a new one with gym.make('SGAPS-SMB-v0')")
        coords = self._reset_coords(options)  # checked before anything changes
        noops = self._reset_noops(options)
        super().reset(seed=seed)
        self._game.reset()
        self._frame_index = 0
        self._last_byte = 0
        if hasattr(self.scorer, "reset"):  # scorers with a memory of the episode start it afresh
            self.scorer.reset()
        # At least one frame, so that the screen buffer is drawn from the restored RAM.
        if noops is None:
            noops = int(self.np_random.integers(0, self.noop_max + 1))
        for _ in range(1 + noops):
            self._advance(0)
        self._game._did_reset()  # re-baseline the game's reward trackers after the no-ops
        if coords is None:  # drawn after the seeded no-ops, as always, so a seed keeps its session
            coords = make_pattern(self.initial_pattern, self.sample_count, self.np_random)
        self._episode_over = False
        observation = self._observe(coords)
        self._last_pixels = observation["pixels"]
        info = self._info(observation, 0.0)
        if self.render_mode == "human":
            self.render()
        return observation, info

    def step(self, action):
        if self._game is None:
            raise ValueError("the environment is closed; create a new one with gym.make('SGAPS-SMB-v0')")
        if self._episode_over:
            raise ValueError("the episode is over (or reset() was never called): call reset() before step()")
        button_index, coords = self._parse_action(action)
        byte = self._button_bytes[button_index]
        game = self._game
        game_reward = 0.0
        terminated = False
        for _ in range(self.frame_skip):
            if self.repeat_action_probability and self.np_random.random() < self.repeat_action_probability:
                frame_byte = self._last_byte
            else:
                frame_byte = byte
            self._advance(frame_byte)
            self._last_byte = frame_byte
            game_reward += game._get_reward()
            terminated = bool(game._get_terminated())
            game._did_step(terminated)
            if terminated:
                break
        self._episode_over = terminated
        observation = self._observe(coords)
        self._last_pixels = observation["pixels"]
        info = self._info(observation, float(game_reward))
        reward = info["reconstruction_score"] if self.reward_mode == "reconstruction" else float(game_reward)
        if self.render_mode == "human":
            self.render()
        return observation, reward, terminated, False, info

    def render(self):
        """``rgb_array``: a copy of the true frame. ``human``: a window with the frame beside the samples."""
        if self.render_mode == "rgb_array":
            return self._copy_screen()
        if self.render_mode == "human":
            if self._viewer is None:
                self._viewer = HumanViewer("SGAPS-SMB-v0", fps=self.metadata["render_fps"])
            self._viewer.show(self._screen, self._last_pixels)
        return None

    def close(self):
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
        if self._game is not None:
            self._game.close()
            self._game = None
        super().close()

    # --- snapshots -----------------------------------------------------------------------------

    def clone_state(self) -> tuple:
        """An in-process snapshot of the game: emulator, frame counters, reward trackers, episode flag.

        Restore it with ``restore_state``; it cannot be pickled (see "Snapshots" in the class docstring).
        """
        if self._game is None:
            raise ValueError("the environment is closed; create a new one with gym.make('SGAPS-SMB-v0')")
        trackers = tuple(dict(value) if isinstance(value, dict) else value
                         for value in (getattr(self._game, name) for name in _GAME_TRACKERS))
        return (self._game.dump_state(), self._ram_before_frame.copy(), self._frame_index, self._last_byte,
                self._episode_over, trackers)

    def restore_state(self, state: tuple) -> None:
        """Put the game back to a ``clone_state`` snapshot of this environment (the episode resumes there)."""
        if self._game is None:
            raise ValueError("the environment is closed; create a new one with gym.make('SGAPS-SMB-v0')")
        if not (isinstance(state, tuple) and len(state) == 6 and len(state[5]) == len(_GAME_TRACKERS)):
            raise ValueError(f"restore_state takes a snapshot returned by clone_state(), got {type(state).__name__}")
        snapshot, ram_before_frame, frame_index, last_byte, episode_over, trackers = state
        self._game.load_state(snapshot)
        np.copyto(self._ram_before_frame, ram_before_frame)
        self._frame_index, self._last_byte, self._episode_over = frame_index, last_byte, episode_over
        for name, value in zip(_GAME_TRACKERS, trackers):
            setattr(self._game, name, dict(value) if isinstance(value, dict) else value)

    # --- extras --------------------------------------------------------------------------------

    def game_info(self) -> dict[str, Any]:
        """gym-super-mario-bros' full info dict for the current RAM (about 40 keys)."""
        return self._game._get_info()

    def button_names(self) -> list[str]:
        """Human-readable name of each button index, e.g. ``'right+A'``."""
        return ["+".join(combo) for combo in self.button_combos]

    @property
    def frame_index(self) -> int:
        """NES frames emulated since reset (``info["frame_index"]`` of the last step)."""
        return self._frame_index

    @property
    def ram(self) -> np.ndarray:
        """The live 2048-byte NES RAM (a view: copy it to keep it)."""
        return self._ram

    @property
    def frame_ram(self) -> np.ndarray:
        """The 2048-byte RAM the current frame was drawn from (the state vector's source; a copy)."""
        return self._ram_before_frame.copy()

    @property
    def config(self) -> dict[str, Any]:
        """The keyword arguments that determine the game and the observations, JSON-serialisable.

        ``SGAPSSuperMarioBrosEnv(**env.config)`` plays the same sessions for the same seeds and
        actions (the scorer, reward mode, rendering and ``return_frame`` are not part of it).
        """
        return dict(self._config, buttons=[list(combo) for combo in self.button_combos])
