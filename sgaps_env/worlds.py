"""The generalisation split: reconstructors learn on worlds 1-4 and are judged on worlds 5-8.

A reconstructor that memorises levels scores 48-54 dB on the stages it saw and 4-6 dB on any other,
so a figure only means something on levels that no training frame came from. This module owns the
split, for every layer: training data, level priors (atlases), vocabularies and hyperparameter
choices use **worlds 1-4 only** (all 16 stages: overworld, underground, athletic, castle, water);
**worlds 5-8 are held out** and used only for evaluation. Training scripts check their sessions with
``check_training_states``, the prior builder refuses held-out frames, checkpoints carry
``split_metadata()``, and evaluations report the two groups apart (``world_group``).

Worlds are read from each frame's state vector (``world`` field), not from a session's label, so a
whole-game session that walks into world 5 is caught too.
"""
from __future__ import annotations

import numpy as np

from sgaps_env.state import field_ints

#: Worlds whose frames may train a model or build a prior (1-based, as the game shows them).
TRAINING_WORLDS = (1, 2, 3, 4)
#: Worlds kept for evaluation only.
HELD_OUT_WORLDS = (5, 6, 7, 8)

TRAINING_GROUP, HELD_OUT_GROUP = "worlds 1-4", "worlds 5-8"

#: How every evaluation and checkpoint states the split.
SPLIT_DESCRIPTION = "trained on worlds 1-4 (all 16 stages); worlds 5-8 held out, evaluation only"

#: The ``--stages train-worlds`` of a recording that may train: the 16 stages of worlds 1-4.
TRAINING_STAGES = tuple(f"{world}-{stage}" for world in TRAINING_WORLDS for stage in range(1, 5))
#: ``--stages held-out-worlds``: the 16 stages of worlds 5-8.
HELD_OUT_STAGES = tuple(f"{world}-{stage}" for world in HELD_OUT_WORLDS for stage in range(1, 5))


def world_group(world: int) -> str:
    """``"worlds 1-4"`` or ``"worlds 5-8"`` for a 1-based world number."""
    if world in TRAINING_WORLDS:
        return TRAINING_GROUP
    if world in HELD_OUT_WORLDS:
        return HELD_OUT_GROUP
    raise ValueError(f"world {world} is not a world of Super Mario Bros (1-8)")


def stage_group(stage: str) -> str:
    """The group of a ``"W-S"`` stage name."""
    return world_group(int(stage.split("-", 1)[0]))


def split_metadata() -> dict:
    """What a checkpoint records about the data it may have seen."""
    return {"training_worlds": list(TRAINING_WORLDS), "held_out_worlds": list(HELD_OUT_WORLDS),
            "split": SPLIT_DESCRIPTION}


def held_out_rows(states: np.ndarray) -> np.ndarray:
    """``(T,)`` bool: which rows of ``states (T, D)`` show a held-out world."""
    worlds = field_ints(np.atleast_2d(states), "world") + 1  # the RAM counts worlds from 0
    return np.isin(worlds, HELD_OUT_WORLDS)


def session_world(session) -> int:
    """The world (1-based) a recorded session (``sgaps_env.session_file.RecordedSession``) starts in."""
    return int(field_ints(session.states(slice(0, 1))[0], "world")[0]) + 1


def check_training_states(states: np.ndarray, where: str) -> None:
    """Raise a ValueError when any row of ``states (T, D)`` comes from worlds 5-8.

    ``where`` names the data (a session and its file) in the message.
    """
    held_out = held_out_rows(states)
    if held_out.any():
        worlds = sorted({int(w) + 1 for w in field_ints(np.atleast_2d(states)[held_out], "world")})
        raise ValueError(f"{where} holds {int(held_out.sum())} frames of world(s) {worlds}: worlds 5-8 are held out "
                         f"for evaluation and must not train a model or build a prior. Record training data "
                         f"from worlds 1-4 only (collect.py --stages {' '.join(TRAINING_STAGES[:2])} ... 4-4, or "
                         "--stages train-worlds)")


def check_training_sessions(sessions, rows: slice = slice(None)) -> None:
    """``check_training_states`` on the ``rows`` of every recorded session (``sgaps_env.session_file.RecordedSession``),
    naming the session and its file."""
    for session in sessions:
        check_training_states(session.states(rows)[0], f"session {session.name} of {session.path}")
