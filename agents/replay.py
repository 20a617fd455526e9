"""Replaying recorded sessions: the same start, the same buttons, the same frames.

The emulator is deterministic and a session stores its environment configuration and seed, so
``replay_session`` rebuilds the environment, resets it with the recorded seed and presses the
recorded buttons at the recorded coordinates: every frame and observation comes back bit for bit.
``ReplayPlayer`` is the same buttons as a player, for ``collect.py`` or any loop.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from sgaps_env.env import SGAPSSuperMarioBrosEnv
from sgaps_env.session_file import SessionFile, attrs_of, session_pixels


def _session_group(index: h5py.File, checkpoint_key: str, session_id: str) -> h5py.Group:
    try:
        return index[checkpoint_key][session_id]
    except KeyError:
        raise ValueError(f"no session {checkpoint_key}/{session_id} in {index.filename}: list the sessions with "
                         "SessionFile(path).entries()") from None


class ReplayPlayer:
    """Presses the buttons of a recorded session, step by step (``reset`` starts it over)."""

    name = "replay"

    def __init__(self, path: str | Path, checkpoint_key: str, session_id: str):
        with SessionFile(path).open() as index:
            self.buttons = _session_group(index, checkpoint_key, session_id)["buttons"][1:].astype(np.int64)
        self._step = 0

    def reset(self, seed: int | None = None) -> None:
        self._step = 0

    def act(self, observation, info) -> int:
        if self._step >= len(self.buttons):
            raise IndexError(f"the recorded session has only {len(self.buttons)} steps")
        self._step += 1
        return int(self.buttons[self._step - 1])


def replay_session(path: str | Path, checkpoint_key: str, session_id: str, return_frame: bool = True
                   ) -> Iterator[tuple[dict[str, np.ndarray], dict]]:
    """Yield ``(observation, info)`` for the reset and every step of a recorded session, re-emulated.

    The environment is rebuilt from the session's ``env_config`` and reset with its ``seed``; each
    step presses the recorded buttons and samples the recorded coordinates.
    """
    with SessionFile(path).open() as index:
        group = _session_group(index, checkpoint_key, session_id)
        attrs = attrs_of(group)
        coords = session_pixels(group)[..., :2]
        buttons = group["buttons"][:]
    env = SGAPSSuperMarioBrosEnv(**attrs["env_config"], return_frame=return_frame)
    try:
        observation, info = env.reset(seed=int(attrs["seed"]), options={"coords": coords[0]})
        yield observation, info
        for row in range(1, len(buttons)):
            observation, _, _, _, info = env.step({"buttons": int(buttons[row]), "coords": coords[row]})
            yield observation, info
    finally:
        env.close()
