"""agents/train_player.py (PPO player training) and agents/sb3_player.py (SB3Player), on real emulator runs."""
import json
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tyro
from stable_baselines3 import PPO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `agents` and `experiments` live at the repo root
    sys.path.insert(0, str(ROOT))

from agents.sb3_player import SB3Player  # noqa: E402
from agents.train_player import Args, main, validate  # noqa: E402
from sgaps_env import PlayerLearningWrapper, SGAPSSuperMarioBrosEnv, make_pattern  # noqa: E402

SAMPLES = 32


def tiny_args(out: Path, **overrides) -> Args:
    """A run of seconds: 2 rollouts of 64 steps, 32 pixels, short episodes, an eval and a checkpoint per rollout."""
    settings = dict(total_timesteps=128, n_steps=64, batch_size=32, n_epochs=2, num_envs=1, sample_count=SAMPLES,
                    max_episode_steps=40, checkpoint_freq=64, eval_freq=64, eval_episodes=1, final_eval_episodes=1,
                    progress=False, out=out)
    settings.update(overrides)
    return Args(**settings)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny training run shared by the tests: (its folder, its summary)."""
    out = tmp_path_factory.mktemp("train") / "run"
    return out, main(tiny_args(out))


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of a run folder: tag -> [(step, value)]."""
    result: dict[str, list[tuple[int, float]]] = {}
    for folder in sorted((run / "tb").iterdir()):
        events = EventAccumulator(str(folder))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            result.setdefault(tag, []).extend((event.step, event.value) for event in events.Scalars(tag))
    return result


@pytest.fixture
def player_env():
    """The raw env the tiny model was trained on (32 gray pixels, 'uniform_grid'), closed afterwards."""
    env = SGAPSSuperMarioBrosEnv(stage="1-1", sample_count=SAMPLES, initial_pattern="uniform_grid")
    yield env
    env.close()


def play(player, env, seed: int, steps: int) -> list[int]:
    """Button indices the player chooses over ``steps`` steps from a seeded reset, sampling the training pattern."""
    coords = make_pattern("uniform_grid", SAMPLES)
    observation, info = env.reset(seed=seed, options={"coords": coords})
    player.reset(seed)
    actions = []
    for _ in range(steps):
        action = player.act(observation, info)
        actions.append(action)
        observation, _, terminated, truncated, info = env.step({"buttons": action, "coords": coords})
        if terminated or truncated:
            break
    return actions


# --- the training run ------------------------------------------------------------------------------------------


def test_smoke_tiny_training_run_writes_models_checkpoints_and_tensorboard(tiny_run):
    run, summary = tiny_run
    for name in ("final_model.zip", "best_model.zip", "evaluations.npz", "config.json", "summary.json",
                 "checkpoints/ppo_player_64_steps.zip", "checkpoints/ppo_player_128_steps.zip",
                 "monitor/train_0.monitor.csv", "monitor/eval.monitor.csv"):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("PPO_*/events.out.tfevents.*"))
    assert summary["num_timesteps"] == summary["trained_timesteps"] == 128
    assert summary["training_episodes"] >= 2  # 40-step time limit
    assert PPO.load(run / "final_model.zip", device="cpu").num_timesteps == 128

    config = json.loads((run / "config.json").read_text())
    assert config["args"]["sample_count"] == SAMPLES and config["resumed_from"] is None
    assert config["env_config"]["pattern"] == "uniform_grid" and config["env_config"]["max_episode_steps"] == 40
    assert SB3Player.read_env_config(run / "final_model.zip") == config["env_config"]

    tags = scalars(run)
    for tag in ("rollout/ep_rew_mean", "rollout/ep_furthest_x_mean", "rollout/success_rate", "episode/furthest_x",
                "episode/flag_get", "eval/mean_reward", "eval/furthest_x_mean", "eval/success_rate"):
        assert tag in tags, tag
    assert len(tags["episode/furthest_x"]) == summary["training_episodes"]
    assert max(value for _, value in tags["episode/furthest_x"]) == summary["training_best_furthest_x"] > 0

    header = (run / "monitor/train_0.monitor.csv").read_text().splitlines()[1]
    assert header.split(",") == ["r", "l", "t", "furthest_x", "flag_get"]
    assert set(summary["final_evaluation"]) == {"final_model", "best_model"}
    final = summary["final_evaluation"]["final_model"]["sampled"]
    assert not final["deterministic"] and summary["final_evaluation"]["best_model"]["deterministic"]["deterministic"]
    assert final["episodes"] == 1 and final["per_episode"][0]["end"] in ("death", "time limit", "flag")
    assert 0 < final["per_episode"][0]["steps"] <= 40


def test_resume_continues_from_a_checkpoint_and_keeps_counting(tiny_run, tmp_path):
    run, _ = tiny_run
    checkpoint = run / "checkpoints" / "ppo_player_64_steps.zip"
    out = tmp_path / "resumed"
    summary = main(tiny_args(out, resume=checkpoint, total_timesteps=64, eval_freq=0, final_eval_episodes=0))
    assert summary["start_timesteps"] == 64 and summary["trained_timesteps"] == 64 and summary["num_timesteps"] == 128
    assert PPO.load(out / "final_model.zip", device="cpu").num_timesteps == 128
    assert (out / "checkpoints" / "ppo_player_128_steps.zip").is_file()  # named by the running count
    assert json.loads((out / "config.json").read_text())["resumed_from"] == str(checkpoint)
    steps = [step for step, _ in scalars(out)["rollout/ep_furthest_x_max"]]
    assert steps and min(steps) > 64


def test_resume_with_other_spaces_is_refused(tiny_run, tmp_path):
    run, _ = tiny_run
    with pytest.raises(ValueError, match=r"sample_count: checkpoint 32, this run 64.*--sample-count 32"):
        main(tiny_args(tmp_path / "bad", resume=run / "final_model.zip", sample_count=64))


# --- SB3Player ---------------------------------------------------------------------------------------------------


def test_sb3_player_plays_valid_buttons_deterministically(tiny_run, player_env):
    run, _ = tiny_run
    player = SB3Player(run / "final_model.zip")
    assert player.pixel_shape == (SAMPLES, 3) and player.num_buttons == 7
    assert player.env_config["sample_count"] == SAMPLES
    player.check_env(player_env)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the training pattern: no pattern warning
        first = play(player, player_env, seed=3, steps=30)
    assert 0 < len(first) <= 30 and all(isinstance(a, int) and 0 <= a < 7 for a in first)
    assert play(player, player_env, seed=3, steps=30) == first
    assert play(SB3Player(run / "final_model.zip"), player_env, seed=3, steps=30) == first


def test_sb3_player_cleans_the_env_observation_like_the_wrapper(tiny_run, player_env):
    run, _ = tiny_run
    player = SB3Player(run / "final_model.zip")
    observation, info = player_env.reset(seed=0, options={"coords": make_pattern("uniform_grid", SAMPLES)})
    assert (observation["state"] == -999.0).any()  # raw env: sentinels in masked entries
    cleaned = PlayerLearningWrapper.clean(observation)
    np.testing.assert_allclose(player.action_probabilities(observation), player.action_probabilities(cleaned))
    raw_model = player.model.predict(cleaned, deterministic=True)[0]
    assert player.act(observation, info) == int(raw_model)


def test_sb3_player_sampling_is_seeded(tiny_run, player_env):
    run, _ = tiny_run
    players = [SB3Player(run / "final_model.zip", deterministic=False) for _ in range(2)]
    observation, info = player_env.reset(seed=0, options={"coords": make_pattern("uniform_grid", SAMPLES)})
    draws = []
    for player in players:
        player.reset(seed=11)
        draws.append([player.act(observation, info) for _ in range(40)])
    assert draws[0] == draws[1] and all(0 <= a < 7 for a in draws[0])


def test_sb3_player_shape_mismatch_says_what_to_do(tiny_run, make_env):
    run, _ = tiny_run
    player = SB3Player(run / "final_model.zip")
    env = make_env(sample_count=64)
    observation, info = env.reset(seed=0)
    message = (r"trained on pixels of shape \(32, 3\) \(sample_count=32, color='gray'\)"
               r".*shape \(64, 3\).*sample_count=64")
    with pytest.raises(ValueError, match=message) as raised:
        player.act(observation, info)
    assert "--sample-count 64" in str(raised.value)
    with pytest.raises(ValueError, match=message):
        player.check_env(env)
    with pytest.raises(ValueError, match=r"color='rgb'.*--color rgb"):
        player.act(make_env(sample_count=SAMPLES, color="rgb").reset(seed=0)[0], {})
    with pytest.raises(ValueError, match="button mismatch: .* 7 buttons \\('simple'\\)"):
        player.check_env(make_env(sample_count=SAMPLES, buttons="right_only"))
    with pytest.raises(ValueError, match="keys"):
        player.act(observation["pixels"], info)


def test_sb3_player_warns_once_about_another_pattern(tiny_run, make_env):
    run, _ = tiny_run
    player = SB3Player(run / "final_model.zip")
    env = make_env(sample_count=SAMPLES, initial_pattern="random")
    observation, info = env.reset(seed=0)
    with pytest.warns(UserWarning, match="'uniform_grid' pattern"):
        player.act(observation, info)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        player.act(observation, info)  # once only
        SB3Player(run / "final_model.zip", check_pattern=False).act(observation, info)


def test_sb3_player_rejects_missing_files(tmp_path):
    with pytest.raises(ValueError, match="no model file"):
        SB3Player(tmp_path / "nope.zip")


# --- the command line ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, option", [
    ({"stage": "9-1"}, "--stage"),
    ({"total_timesteps": 0}, "--total-timesteps"),
    ({"num_envs": 0}, "--num-envs"),
    ({"sample_count": 0}, "--sample-count"),
    ({"sample_count": 240 * 256 + 1}, "--sample-count"),
    ({"frame_skip": 0}, "--frame-skip"),
    ({"max_episode_steps": 0}, "--max-episode-steps"),
    ({"reward_scale": 0.0}, "--reward-scale"),
    ({"reward_scale": float("nan")}, "--reward-scale"),
    ({"learning_rate": -1e-4}, "--learning-rate"),
    ({"batch_size": 2048}, "--batch-size"),
    ({"n_epochs": 0}, "--n-epochs"),
    ({"gamma": 1.5}, "--gamma"),
    ({"gae_lambda": -0.1}, "--gae-lambda"),
    ({"ent_coef": -0.01}, "--ent-coef"),
    ({"clip_range": 0.0}, "--clip-range"),
    ({"net_arch": [64, 0]}, "--net-arch"),
    ({"checkpoint_freq": -1}, "--checkpoint-freq"),
    ({"eval_freq": -1}, "--eval-freq"),
    ({"eval_episodes": 0}, "--eval-episodes"),
    ({"torch_threads": 0}, "--torch-threads"),
    ({"resume": Path("no/such/checkpoint.zip")}, "--resume"),
])
def test_bad_arguments_raise_clear_errors(change, option):
    with pytest.raises(ValueError, match=option):
        validate(replace(Args(), **change))


def test_out_folder_holding_a_run_is_refused(tiny_run):
    run, _ = tiny_run
    with pytest.raises(ValueError, match="already holds a run"):
        main(tiny_args(run))


def test_command_line_options_parse_into_args_and_bad_choices_are_usage_errors(capsys):
    args = tyro.cli(Args, args=["--net-arch", "32", "16", "--no-eval-deterministic", "--buttons", "right_only"])
    assert args.net_arch == [32, 16] and args.eval_deterministic is False and args.buttons == "right_only"
    with pytest.raises(SystemExit) as raised:
        tyro.cli(Args, args=["--color", "blue"])
    assert raised.value.code == 2 and "--color" in capsys.readouterr().err


@pytest.mark.slow
def test_script_runs_as_a_file_and_explains_bad_values():
    script = str(ROOT / "agents" / "train_player.py")
    done = subprocess.run([sys.executable, script, "--num-envs", "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "error: --num-envs must be at least 1" in done.stderr
    assert "Traceback" not in done.stderr
