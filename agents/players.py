"""Players: choose the button index of the next step from what the environment shows.

Every player implements ``sgaps_env.player.Player`` (``reset(seed)``, ``act(observation, info)
-> int``), so recorders and experiments can take any of them by name with ``make_player``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from agents.demonstrations import DemonstrationPlayer
from agents.heuristic import HeuristicPlayer
from sgaps_env.buttons import resolve_button_set
from sgaps_env.player import CallablePlayer, Player, as_player
from sgaps_env.state import ENEMY_SLOTS, STATE_INDEX, field_value


class RandomPlayer:
    """Uniformly random buttons with sticky actions: each step keeps the last choice with ``stickiness``."""

    name = "random"

    def __init__(self, button_set: str | list[list[str]] = "simple", stickiness: float = 0.75, seed: int | None = None):
        if not 0.0 <= stickiness < 1.0:
            raise ValueError(f"stickiness must be in [0, 1), got {stickiness}")
        self.num_buttons = len(resolve_button_set(button_set))
        self.stickiness = stickiness
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None or not hasattr(self, "_rng"):
            self._rng = np.random.default_rng(seed)
        self._last = 0

    def act(self, observation, info) -> int:
        if self._rng.random() >= self.stickiness:
            self._last = int(self._rng.integers(self.num_buttons))
        return self._last


class RunRightPlayer:
    """Runs right and jumps when an enemy is close ahead or Mario is blocked, using the state vector.

    A simple RAM-aware player for demos and tests; ``button_set`` must contain
    ``right+B`` and ``right+A+B`` (true of "simple", "right_only" and "complex").
    """

    name = "run_right"

    def __init__(self, button_set: str | list[list[str]] = "simple", jump_frames: int = 6, enemy_distance: float = 48):
        combos = resolve_button_set(button_set)
        try:
            self._run = combos.index(("right", "B"))
            self._jump = combos.index(("right", "A", "B"))
        except ValueError:
            raise ValueError("RunRightPlayer needs the combos right+B and right+A+B in the button set") from None
        self.jump_steps = jump_frames
        self.enemy_distance = float(enemy_distance)  # screen pixels
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self._jumping = 0
        self._cooldown = 0
        self._last_x = None

    def act(self, observation, info) -> int:
        state, mask = observation["state"], observation["state_mask"]
        player_x = field_value(state, "player_screen_x")
        level_x = field_value(state, "player_level_x")
        blocked = self._last_x is not None and level_x <= self._last_x
        self._last_x = level_x
        enemy_ahead = any(mask[STATE_INDEX[f"enemy{slot}_screen_x"]]
                          and 0.0 < field_value(state, f"enemy{slot}_screen_x") - player_x < self.enemy_distance
                          for slot in range(ENEMY_SLOTS))
        if self._jumping:
            self._jumping -= 1
            return self._jump
        if self._cooldown:
            self._cooldown -= 1  # release A so the next jump registers
            return self._run
        if enemy_ahead or blocked:
            self._jumping = self.jump_steps
            self._cooldown = 1
            return self._jump
        return self._run


__all__ = ["PLAYERS", "CallablePlayer", "DemonstrationPlayer", "Player", "RandomPlayer", "RunRightPlayer", "as_player", "make_player"]

def _sb3_player(**options) -> Player:
    """``SB3Player(path=..., deterministic=...)``; imported on use, since it loads torch."""
    from agents.sb3_player import SB3Player

    return SB3Player(**options)


def _replay_player(**options) -> Player:
    """``ReplayPlayer(path=..., checkpoint_key=..., session_id=...)``."""
    from agents.replay import ReplayPlayer

    return ReplayPlayer(**options)


#: Players by name.
PLAYERS: dict[str, Callable[..., Player]] = {"random": RandomPlayer, "run_right": RunRightPlayer,
                                             "heuristic": HeuristicPlayer, "sb3": _sb3_player,
                                             "replay": _replay_player, "demonstration": DemonstrationPlayer}


def make_player(name: str, **kwargs) -> Player:
    """A player by name, e.g. ``make_player("run_right", button_set="simple")``."""
    if name not in PLAYERS:
        raise ValueError(f"unknown player {name!r}: expected one of {sorted(PLAYERS)}")
    return PLAYERS[name](**kwargs)
