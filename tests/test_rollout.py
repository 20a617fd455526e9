"""The one play loop (sgaps_env.rollout.Rollout) on the real emulator."""
import numpy as np
import pytest

from agents import RunRightPlayer
from sgaps_env.rollout import Rollout
from sgaps_env.sampler import PatternSampler


class SpySampler(PatternSampler):
    """A random pattern that remembers the info dicts it was asked about."""

    def __init__(self, count):
        super().__init__("random", count)
        self.seen_infos = []

    def next_coords(self, observation, info):
        self.seen_infos.append(dict(info))
        return super().next_coords(observation, info)


class SpyPlayer(RunRightPlayer):
    def __init__(self):
        self.seeds, self.seen_infos = [], []
        super().__init__()  # resets once itself
        self.seeds.clear()

    def reset(self, seed=None):
        self.seeds.append(seed)
        super().reset(seed)

    def act(self, observation, info):
        self.seen_infos.append(dict(info))
        return super().act(observation, info)


def test_steps_are_numbered_from_the_reset_and_the_summary_follows_the_info(make_env):
    env = make_env(sample_count=100)
    rollout = Rollout(env, RunRightPlayer(), PatternSampler("random", 100), seed=3, max_steps=30)
    steps = list(rollout)
    assert [step.step for step in steps] == list(range(31))
    assert steps[0].buttons is None and steps[0].reward == 0.0 and all(s.buttons is not None for s in steps[1:])
    assert steps[-1].truncated and not steps[-1].terminated and not any(s.done for s in steps[:-1])
    summary = rollout.summary
    assert summary.steps == 30 and summary.truncated
    assert summary.furthest_x == max(step.info["x_pos"] for step in steps) > steps[0].info["x_pos"]
    assert summary.emulated_frames == steps[-1].info["frame_index"]


def test_what_a_consumer_adds_to_the_info_reaches_the_player_and_the_sampler(make_env):
    env = make_env(sample_count=50)
    player, sampler = SpyPlayer(), SpySampler(50)
    for step in Rollout(env, player, sampler, seed=0, max_steps=5):
        step.info["reconstruction"] = f"frame {step.step}"
    assert [info["reconstruction"] for info in sampler.seen_infos] == [f"frame {i}" for i in range(5)]
    assert [info["reconstruction"] for info in player.seen_infos] == [f"frame {i}" for i in range(5)]
    assert player.seeds == [0]


def test_a_seed_plays_the_same_game_whatever_samples_it(make_env):
    def states(pattern, seed):
        env = make_env(sample_count=64)
        return np.stack([step.observation["state"] for step in
                         Rollout(env, RunRightPlayer(), PatternSampler(pattern, 64), seed=seed, max_steps=40)])

    same = states("random", 5)
    np.testing.assert_array_equal(same, states("uniform_grid", 5))
    np.testing.assert_array_equal(same, states("random", 5))
    assert not np.array_equal(same, states("random", 6))  # another seed: another no-op start


def test_episodes_continue_after_the_end_and_total_steps_stops_the_run(make_env):
    env = make_env(sample_count=32)
    player = SpyPlayer()
    rollout = Rollout(env, player, PatternSampler("random", 32), seed=1, max_steps=10, episodes=3)
    steps = list(rollout)
    assert [summary.steps for summary in rollout.summaries] == [10, 10, 10]
    assert [step.episode for step in steps if step.step == 0] == [0, 1, 2]
    assert player.seeds == [1, None, None] and rollout.steps_played == 30
    replayed = [step.observation["state"] for step in rollout]  # a second pass replays it from the seed
    np.testing.assert_array_equal(np.stack(replayed), np.stack([step.observation["state"] for step in steps]))
    assert len(rollout.summaries) == 3 and rollout.steps_played == 30

    capped = Rollout(make_env(sample_count=32), RunRightPlayer(), PatternSampler("random", 32), seed=1,
                     max_steps=10, episodes=100, total_steps=25)
    assert sum(1 for step in capped if step.step > 0) == 25 and capped.steps_played == 25


@pytest.mark.parametrize("kwargs, message", [
    ({"max_steps": 0}, "max_steps must be a positive integer"),
    ({"max_steps": True}, "max_steps must be a positive integer"),
    ({"total_steps": 2.5}, "total_steps must be a positive integer"),
    ({"episodes": 0}, "episodes must be a positive integer"),
])
def test_bad_rollout_arguments_are_explained(make_env, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Rollout(make_env(), RunRightPlayer(), PatternSampler("random", 500), **kwargs)


def test_a_sampler_must_be_a_sampler(make_env):
    with pytest.raises(ValueError, match="sampler must implement"):
        Rollout(make_env(), RunRightPlayer(), "random")
    with pytest.raises(ValueError, match="rollout has not started"):
        Rollout(make_env(), RunRightPlayer(), PatternSampler("random", 500)).summary
