"""Replaying recorded sessions: the same start, the same buttons, the same frames.

The emulator is deterministic and a session stores its environment configuration and seed, so
``replay_session`` rebuilds the environment, resets it with the recorded seed and presses the
recorded buttons at the recorded coordinates: every frame and observation comes back bit for bit.
``ReplayPlayer`` is the same buttons as a player, for ``collect.py`` or any loop.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from sgaps_env.env import SGAPSSuperMarioBrosEnv
from sgaps_env.rollout import Rollout
from sgaps_env.session_file import RecordedSession, SessionFile


def _recorded_session(path: str | Path, checkpoint_key: str, session_id: str) -> RecordedSession:
    """The indexed session ``checkpoint_key/session_id`` of the session file at ``path``, or a ValueError."""
    if (checkpoint_key, session_id) not in SessionFile(path):
        raise ValueError(f"no session {checkpoint_key}/{session_id} in {path}: list the sessions with "
                         "sgaps_env.session_file.list_sessions(path)")
    return RecordedSession(Path(path), checkpoint_key, session_id)


class ReplayPlayer:
    """Presses the buttons of a recorded session, step by step (``reset`` starts it over)."""

    name = "replay"

    def __init__(self, path: str | Path, checkpoint_key: str, session_id: str):
        self.buttons = _recorded_session(path, checkpoint_key, session_id).buttons()[1:].astype(np.int64)
        self._step = 0

    def reset(self, seed: int | None = None) -> None:
        self._step = 0

    def act(self, observation, info) -> int:
        if self._step >= len(self.buttons):
            raise IndexError(f"the recorded session has only {len(self.buttons)} steps")
        self._step += 1
        return int(self.buttons[self._step - 1])


class RecordedCoordsSampler:
    """Samples every row at the coordinates a recorded session sampled it at (``reset`` starts it over)."""

    name = "recorded"

    def __init__(self, coords: np.ndarray):
        self.coords = np.asarray(coords, dtype=np.float32)
        self._row = 0

    def reset(self, seed: int | None = None) -> np.ndarray:
        self._row = 0
        return self.coords[0].copy()

    def next_coords(self, observation=None, info=None) -> np.ndarray:
        self._row += 1
        if self._row >= len(self.coords):
            raise IndexError(f"the recorded session has only {len(self.coords) - 1} steps")
        return self.coords[self._row].copy()


def replay_session(path: str | Path, checkpoint_key: str, session_id: str, return_frame: bool = True
                   ) -> Iterator[tuple[dict[str, np.ndarray], dict]]:
    """Yield ``(observation, info)`` for the reset and every step of a recorded session, re-emulated.

    The environment is rebuilt from the session's ``env_config`` and reset with its ``seed``; each
    step presses the recorded buttons and samples the recorded coordinates.
    """
    session = _recorded_session(path, checkpoint_key, session_id)
    attrs = session.attrs()
    player = ReplayPlayer(path, checkpoint_key, session_id)
    sampler = RecordedCoordsSampler(session.pixels()[..., :2])
    env = SGAPSSuperMarioBrosEnv(**attrs["env_config"], return_frame=return_frame)
    try:
        steps = len(player.buttons)
        rollout = Rollout(env, player, sampler, seed=int(attrs["seed"]), max_steps=max(1, steps))
        for step in rollout:
            yield step.observation, step.info
            if step.step == steps:  # a session cut off by the recorder's time limit ends here too
                break
    finally:
        env.close()
