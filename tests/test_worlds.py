"""The generalisation split: worlds 1-4 may train, worlds 5-8 are held out (sgaps_env.worlds)."""
import numpy as np
import pytest

import sgaps_env
from sgaps_env.worlds import (HELD_OUT_GROUP, TRAINING_GROUP, TRAINING_STAGES, check_training_states,
                              held_out_rows, stage_group, world_group)


def _states(stage, steps=6):
    """Real state vectors of a few steps of ``stage``."""
    env = sgaps_env.SGAPSSuperMarioBrosEnv(stage=stage, sample_count=4, noop_max=0)
    try:
        observation, _ = env.reset(seed=0)
        states = [observation["state"]]
        for _ in range(steps):
            observation, *_ = env.step({"buttons": 1, "coords": np.full((4, 2), 0.5, np.float32)})
            states.append(observation["state"])
        return np.stack(states)
    finally:
        env.close()


def test_the_stage_groups_split_the_game_in_two():
    train, held_out = sgaps_env.stage_names(["train-worlds"]), sgaps_env.stage_names(["held-out-worlds"])
    assert train == list(TRAINING_STAGES) and len(train) == len(held_out) == 16
    assert sorted(train + held_out) == sorted(sgaps_env.ALL_STAGES)
    assert {stage_group(s) for s in train} == {TRAINING_GROUP} and {stage_group(s) for s in held_out} == {HELD_OUT_GROUP}
    assert world_group(4) == TRAINING_GROUP and world_group(5) == HELD_OUT_GROUP
    with pytest.raises(ValueError, match="world 9"):
        world_group(9)


def test_frames_of_worlds_5_to_8_are_refused_for_training():
    one_one, five_one = _states("1-1"), _states("5-1")
    assert not held_out_rows(one_one).any() and held_out_rows(five_one).all()
    check_training_states(one_one, "1-1")  # allowed
    with pytest.raises(ValueError, match=r"session x holds 7 frames of world\(s\) \[5\].*worlds 1-4 only"):
        check_training_states(five_one, "session x")
    mixed = np.concatenate([one_one, five_one[:1]])
    with pytest.raises(ValueError, match="holds 1 frames"):
        check_training_states(mixed, "a whole-game session")


def test_no_prior_is_built_from_a_held_out_world(tmp_path):
    import tyro

    from agents import collect
    from models.memory import StagePriors

    def record(output, stage):
        collect.main(tyro.cli(collect.Args, args=["--output", str(output), "--no-progress", "--workers", "1",
                                                  "--stages", stage, "--episodes", "1", "--max-steps", "8",
                                                  "--store-frames"]))

    record(tmp_path / "train.h5", "1-1")
    record(tmp_path / "mixed.h5", "1-1")
    record(tmp_path / "mixed.h5", "7-1")
    priors = StagePriors.from_session_files([tmp_path / "train.h5"], split=None, progress=False)
    assert priors.levels, "worlds 1-4 build a prior"
    with pytest.raises(ValueError, match=r"7-1.*world\(s\) \[7\]"):
        StagePriors.from_session_files([tmp_path / "mixed.h5"], split=None, progress=False)


def test_evaluations_report_the_groups_and_the_split():
    from experiments.evaluate_reconstructors import group_of, split_line

    assert group_of("5-1", {"1-1"}) == "worlds 5-8, unseen stages"
    assert group_of("1-1", {"1-1"}) == "worlds 1-4, trained stages"
    assert group_of("game", set()) == "whole game, unseen stages"
    assert split_line(None).startswith("Split: trained on worlds 1-4")
