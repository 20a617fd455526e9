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


@pytest.fixture(scope="session")
def heuristic_play_1_1():
    """Heuristic play of 1-1, 121 frames, sampled at random: ``(frames (T, H, W, 3) uint8, states (T, D), masks (T, D))``."""
    import sgaps_env
    from agents.players import make_player
    from sgaps_env.coords import make_pattern

    count = 300
    env = sgaps_env.SGAPSSuperMarioBrosEnv(stage="1-1", color="rgb", return_frame=True, sample_count=count)
    player = make_player("heuristic")
    rng = np.random.default_rng(0)
    observation, info = env.reset(seed=0)
    player.reset(0)
    frames, states, masks = [info["frame"].copy()], [observation["state"]], [observation["state_mask"]]
    for _ in range(120):
        observation, _, terminated, truncated, info = env.step(
            {"buttons": player.act(observation, info), "coords": make_pattern("random", count, rng)})
        frames.append(info["frame"].copy())
        states.append(observation["state"])
        masks.append(observation["state_mask"])
        if terminated or truncated:
            break
    env.close()
    return np.stack(frames), np.stack(states), np.stack(masks)
