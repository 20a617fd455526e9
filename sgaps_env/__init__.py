"""SGAPS: Super Mario Bros as a Gymnasium environment observed through sparse sampled pixels.

Importing this package registers ``SGAPS-SMB-v0`` (the whole game from 1-1) and
``SGAPS-SMB-W-S-v0`` for each of the 32 stages (``W`` in 1..8, ``S`` in 1..4)::

    import gymnasium as gym
    import sgaps_env

    env = gym.make("SGAPS-SMB-v0", stage="1-1", sample_count=500)
    # or, without the import: gym.make("sgaps_env:SGAPS-SMB-v0")
"""
from gymnasium.envs.registration import register, registry

from sgaps_env.coords import (FRAME_HEIGHT, FRAME_WIDTH, PATTERNS, extract_pixels, make_pattern, pixel_to_uv,
                              uv_to_pixel)
from sgaps_env.env import ALL_STAGES, SGAPSSuperMarioBrosEnv, parse_stage, stage_names
from sgaps_env.player import Player, as_player
from sgaps_env.state import STATE_FIELDS, STATE_INDEX, StateVectorReader
from sgaps_env.tiles import allocation_to_coords
from sgaps_env.wrappers import PlayerLearningWrapper, SamplerLearningWrapper

__version__ = "0.1.0"

ENV_ID = "SGAPS-SMB-v0"
ENTRY_POINT = "sgaps_env.env:SGAPSSuperMarioBrosEnv"


def stage_env_id(world: int, stage: int) -> str:
    """The registered id of one stage, e.g. ``stage_env_id(1, 1) == "SGAPS-SMB-1-1-v0"``."""
    return f"SGAPS-SMB-{world}-{stage}-v0"


if ENV_ID not in registry:
    register(id=ENV_ID, entry_point=ENTRY_POINT)
    for _name in ALL_STAGES:
        register(id=stage_env_id(*parse_stage(_name)), entry_point=ENTRY_POINT, kwargs={"stage": _name})

__all__ = [
    "ALL_STAGES", "ENV_ID", "FRAME_HEIGHT", "FRAME_WIDTH", "PATTERNS", "STATE_FIELDS", "STATE_INDEX", "Player",
    "PlayerLearningWrapper", "SGAPSSuperMarioBrosEnv", "SamplerLearningWrapper", "StateVectorReader",
    "allocation_to_coords", "as_player", "extract_pixels", "make_pattern", "parse_stage", "pixel_to_uv",
    "stage_env_id", "stage_names", "uv_to_pixel",
]
