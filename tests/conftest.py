"""Shared fixtures: small real emulator runs."""
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # 'human' rendering without a display

import numpy as np
import pytest

import sgaps_env


@pytest.fixture
def make_env():
    """Factory for SGAPS envs that are closed after the test."""
    created = []

    def factory(**kwargs):
        kwargs.setdefault("stage", "1-1")
        env = sgaps_env.SGAPSSuperMarioBrosEnv(**kwargs)
        created.append(env)
        return env

    yield factory
    for env in created:
        env.close()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
