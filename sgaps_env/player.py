"""The player interface: what chooses the buttons while something else chooses where to look.

Recorders, wrappers and experiments take any player through this one interface:
``player.reset(seed)`` at the start of an episode and ``player.act(observation, info) -> int``
(a button index of the env's button set) each step. Implementations live in ``agents``; a plain
callable ``fn(observation) -> int`` is adapted with ``as_player``.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np


class Player(Protocol):
    """Chooses the button index of the next step from the env's observation and info."""

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> int: ...


def is_player(candidate: object) -> bool:
    """True when ``candidate`` has callable ``reset`` and ``act`` methods."""
    return callable(getattr(candidate, "reset", None)) and callable(getattr(candidate, "act", None))


class CallablePlayer:
    """Adapts ``fn(observation) -> int`` to the player interface."""

    name = "callable"

    def __init__(self, fn: Callable[[dict[str, np.ndarray]], int]):
        self.fn = fn

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation, info) -> int:
        return int(self.fn(observation))


def as_player(player: Player | Callable[[dict[str, np.ndarray]], int]) -> Player:
    """A player as it is, or a plain callable ``observation -> int`` wrapped as one."""
    if is_player(player):
        return player
    if callable(player):
        return CallablePlayer(player)
    raise TypeError(f"expected a player (with reset(seed) and act(observation, info) -> int) or a callable "
                    f"observation -> int, got {player!r}")
