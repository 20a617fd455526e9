"""SGAPS-SMB-v0 on the real emulator: spaces, conformance, alignment, rewards and bad input."""
import re
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sgaps_env
from agents import RandomPlayer, RunRightPlayer
from sgaps_env.coords import extract_pixels, make_pattern, pixel_to_uv, uv_to_pixel
from sgaps_env.state import STATE_FIELDS, STATE_INDEX

RIGHT_B = 3  # index of right+B in the "simple" button set


def fixed_action(env, buttons=RIGHT_B, pattern="uniform_grid"):
    return {"buttons": buttons, "coords": make_pattern(pattern, env.sample_count)}


def play(env, steps, seed, player=None):
    """Observations, rewards and flags of ``steps`` steps, resetting (unseeded) after each episode."""
    player = player or RandomPlayer(seed=seed)
    coords_rng = np.random.default_rng(seed)
    observation, info = env.reset(seed=seed)
    record = []
    for _ in range(steps):
        action = {"buttons": player.act(observation, info),
                  "coords": make_pattern("random", env.sample_count, coords_rng)}
        observation, reward, terminated, truncated, info = env.step(action)
        record.append((observation, reward, terminated))
        if terminated or truncated:
            observation, info = env.reset()
            player.reset()
    return record


# --- spaces and registration ---------------------------------------------------------------------


@pytest.mark.parametrize("color, channels", [("gray", 1), ("rgb", 3)])
def test_spaces_follow_the_contract(make_env, color, channels):
    env = make_env(sample_count=300, color=color, max_state_dim=60)
    obs_space, act_space = env.observation_space, env.action_space
    assert obs_space["pixels"].shape == (300, 2 + channels) and obs_space["pixels"].dtype == np.float32
    assert obs_space["state"].shape == obs_space["state_mask"].shape == (60,)
    assert obs_space["state"].dtype == obs_space["state_mask"].dtype == np.float32
    assert act_space["buttons"] == gym.spaces.Discrete(7)
    assert act_space["coords"].shape == (300, 2) and act_space["coords"].dtype == np.float32
    observation, _ = env.reset(seed=0)
    assert obs_space.contains(observation)
    assert env.button_names()[RIGHT_B] == "right+B"


@pytest.mark.parametrize("buttons, count", [("right_only", 5), ("complex", 12), ([["NOOP"], ["right", "A"]], 2)])
def test_button_sets_are_selectable(make_env, buttons, count):
    assert make_env(buttons=buttons).action_space["buttons"].n == count


def test_registered_ids_choose_the_stage():
    env = gym.make("SGAPS-SMB-4-2-v0")
    _, info = env.reset(seed=0)
    assert (info["world"], info["stage"]) == (4, 2)
    env.close()
    whole = gym.make(sgaps_env.ENV_ID)
    _, info = whole.reset(seed=0)
    assert (info["world"], info["stage"]) == (1, 1)
    whole.close()


def test_make_with_module_prefix_imports_the_package():
    code = ("import gymnasium as gym; env = gym.make('sgaps_env:SGAPS-SMB-v0', sample_count=10); "
            "obs, _ = env.reset(seed=0); print(obs['pixels'].shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("(10, 3)")


# --- conformance --------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", [sgaps_env.ENV_ID, "SGAPS-SMB-1-1-v0"])
def test_gymnasium_env_checker_passes_without_warnings(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        check_env(env.unwrapped)
    env.close()


def test_same_seed_same_500_step_session_and_different_seeds_differ(make_env):
    env = make_env()
    first = play(env, 500, seed=3)
    second = play(env, 500, seed=3)
    other = play(env, 500, seed=4)
    assert sum(terminated for _, _, terminated in first) >= 1, "the session should span several episodes"
    for (obs_a, reward_a, done_a), (obs_b, reward_b, done_b) in zip(first, second):
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        assert reward_a == reward_b and done_a == done_b
    assert any(not np.array_equal(a[0]["pixels"], b[0]["pixels"]) for a, b in zip(first, other))


def test_seed_changes_the_game_through_noop_starts(make_env):
    env = make_env(noop_max=30)
    starts = {env.reset(seed=seed)[1]["frame_index"] for seed in range(8)}
    assert len(starts) > 1 and min(starts) >= 1 and max(starts) <= 31
    assert make_env(noop_max=0).reset(seed=5)[1]["frame_index"] == 1


@pytest.mark.parametrize("mode, vector_kwargs", [("sync", {}), ("async", {"context": "spawn"})])
def test_vector_envs_step_in_batches(mode, vector_kwargs):
    envs = gym.make_vec("SGAPS-SMB-1-1-v0", num_envs=2, vectorization_mode=mode, vector_kwargs=vector_kwargs,
                        sample_count=32)
    try:
        observations, _ = envs.reset(seed=[1, 2])
        assert observations["pixels"].shape == (2, 32, 3)
        for _ in range(3):
            action = {"buttons": np.array([RIGHT_B, 1]), "coords": np.full((2, 32, 2), 0.5, np.float32)}
            observations, rewards, terminated, truncated, infos = envs.step(action)
        assert observations["state"].shape == (2, 64) and rewards.shape == (2,)
        np.testing.assert_allclose(observations["pixels"][:, :, :2], 0.5, atol=1 / 256)
    finally:
        envs.close()


def test_close_twice_is_harmless_and_a_closed_env_refuses_to_run(make_env):
    env = make_env()
    env.reset(seed=0)
    env.close()
    env.close()
    with pytest.raises(ValueError, match="closed"):
        env.step(fixed_action(env))
    with pytest.raises(ValueError, match="closed"):
        env.reset()


# --- what the observation means ----------------------------------------------------------------


def test_pixels_come_from_this_steps_frame_at_the_requested_coordinates(make_env, rng):
    env = make_env(return_frame=True, color="rgb", sample_count=200)
    env.reset(seed=0)
    for _ in range(20):
        coords = rng.random((200, 2)).astype(np.float32)
        observation, _, terminated, _, info = env.step({"buttons": RIGHT_B, "coords": coords})
        rows, cols = uv_to_pixel(coords)
        np.testing.assert_array_equal(observation["pixels"][:, :2], pixel_to_uv(rows, cols))
        np.testing.assert_array_equal(observation["pixels"], extract_pixels(info["frame"], coords, "rgb"))
        assert not terminated


def test_returned_frames_are_copies_not_the_shared_screen(make_env):
    env = make_env(return_frame=True)
    _, first = env.reset(seed=0)
    kept = first["frame"].copy()
    for _ in range(10):
        env.step(fixed_action(env))
    np.testing.assert_array_equal(first["frame"], kept)


def test_frames_are_the_emulators_rgb_screen(make_env):
    """The plane-by-plane copy gives nes-py's RGB screen exactly (its buffer is BGRx, read backwards)."""
    env = make_env(return_frame=True, render_mode="rgb_array")
    env.reset(seed=0)
    for _ in range(20):
        _, _, _, _, info = env.step(fixed_action(env))
    screen = env.unwrapped._game.screen
    assert info["frame"].shape == (240, 256, 3) and info["frame"].flags.c_contiguous
    np.testing.assert_array_equal(info["frame"], np.array(screen))
    np.testing.assert_array_equal(env.render(), info["frame"])
    assert tuple(info["frame"][100, 10]) == (104, 136, 252), "1-1's sky, in RGB order"


def horizontal_shift(previous, current, largest=8):
    """How many pixels the playfield (below the HUD) moved left between two frames."""
    a, b = previous[40:].astype(np.int16), current[40:].astype(np.int16)
    errors = [np.abs(b[:, :256 - d] - a[:, d:]).mean() for d in range(largest + 1)]
    return int(np.argmin(errors))


def test_state_camera_x_predicts_the_scroll_between_its_frames(make_env):
    """The state returned with a frame describes that frame (the NES draws from last frame's RAM)."""
    env = make_env(frame_skip=1, return_frame=True)
    observation, info = env.reset(seed=1)
    camera = STATE_INDEX["camera_x"]
    checked = agreed = 0
    for t in range(400):
        action = {"buttons": 4 if (t // 15) % 3 else RIGHT_B, "coords": make_pattern("uniform_grid", 500)}
        previous_camera, previous_frame = observation["state"][camera], info["frame"]
        observation, _, terminated, _, info = env.step(action)
        if terminated:
            break
        scroll = round((observation["state"][camera] - previous_camera) * 4096)
        shift = horizontal_shift(previous_frame, info["frame"])
        if scroll or shift:
            checked += 1
            agreed += scroll == shift
    assert checked >= 100, "the camera should scroll during this run"
    assert agreed / checked >= 0.98, f"camera x matched the frame shift in only {agreed}/{checked} steps"


def test_running_right_moves_mario_and_earns_game_reward(make_env):
    env = make_env()
    observation, _ = env.reset(seed=0)
    start_x = observation["state"][STATE_INDEX["player_level_x"]]
    total = 0.0
    for _ in range(25):
        observation, reward, terminated, _, info = env.step(fixed_action(env))
        assert reward == info["game_reward"]
        total += reward
    assert total > 10
    assert (observation["state"][STATE_INDEX["player_level_x"]] - start_x) * 4096 > 100
    assert observation["state"][STATE_INDEX["player_x_speed"]] > 0


def test_frame_skip_sets_emulated_frames_per_step(make_env):
    for skip in (1, 4, 6):
        env = make_env(frame_skip=skip, noop_max=0)
        _, info = env.reset(seed=0)
        before = info["frame_index"]
        _, _, _, _, info = env.step(fixed_action(env))
        assert info["frame_index"] - before == skip


def test_sticky_actions_hold_the_previous_buttons(make_env):
    def distance(probability):
        env = make_env(repeat_action_probability=probability, noop_max=0)
        observation, _ = env.reset(seed=0)
        start = observation["state"][STATE_INDEX["player_level_x"]]
        for _ in range(15):
            observation, *_ = env.step(fixed_action(env))
        return (observation["state"][STATE_INDEX["player_level_x"]] - start) * 4096

    assert distance(0.0) > 40
    assert distance(0.999) < 5  # the NOOP of reset is repeated: 60 frames switch with chance 6%


def test_episode_ends_at_death_in_a_stage_but_not_in_the_whole_game(make_env):
    def until_first_life_lost(env):
        observation, info = env.reset(seed=0)
        player = RunRightPlayer()
        lives = observation["state"][STATE_INDEX["lives"]]
        for _ in range(400):
            observation, _, terminated, _, info = env.step(
                {"buttons": player.act(observation, info), "coords": make_pattern("uniform_grid", env.sample_count)})
            if terminated or observation["state"][STATE_INDEX["lives"]] < lives:
                return terminated, observation
        raise AssertionError("the run-right player should lose a life within 400 steps")

    terminated, _ = until_first_life_lost(make_env(stage="1-1"))
    assert terminated
    terminated, observation = until_first_life_lost(make_env(stage=None))
    assert not terminated and observation["state"][STATE_INDEX["lives"]] * 10 == pytest.approx(1)


# --- rewards from a scorer ----------------------------------------------------------------------


class RecordingScorer:
    def __init__(self):
        self.calls = []

    def __call__(self, frame, pixels, state, state_mask):
        self.calls.append((frame.copy(), pixels.copy(), state.copy(), state_mask.copy()))
        return float(pixels[:, 2].mean())


def test_scorer_sees_this_steps_frame_pixels_and_state(make_env):
    scorer = RecordingScorer()
    env = make_env(scorer=scorer, return_frame=True)
    env.reset(seed=0)
    observation, reward, _, _, info = env.step(fixed_action(env))
    frame, pixels, state, mask = scorer.calls[-1]
    np.testing.assert_array_equal(frame, info["frame"])
    np.testing.assert_array_equal(pixels, observation["pixels"])
    np.testing.assert_array_equal(state, observation["state"])
    np.testing.assert_array_equal(mask, observation["state_mask"])
    assert info["reconstruction_score"] == pytest.approx(pixels[:, 2].mean())
    assert reward == info["game_reward"]  # the game reward is returned unless asked otherwise


def test_reconstruction_reward_mode_returns_the_score(make_env):
    from models.scoring import BaselineScorer

    rewards = {}
    for count in (50, 20000):
        env = make_env(scorer=BaselineScorer(), reward_mode="reconstruction", sample_count=count)
        env.reset(seed=0)
        _, reward, _, _, info = env.step({"buttons": RIGHT_B, "coords": make_pattern("uniform_grid", count)})
        assert reward == info["reconstruction_score"] != info["game_reward"]
        rewards[count] = reward
    assert rewards[20000] > rewards[50] + 2, f"more samples should reconstruct better: {rewards}"


# --- rendering ----------------------------------------------------------------------------------


def test_rgb_array_render_is_a_copy_of_the_true_frame(make_env):
    env = make_env(render_mode="rgb_array", return_frame=True)
    _, info = env.reset(seed=0)
    picture = env.render()
    assert picture.shape == (240, 256, 3) and picture.dtype == np.uint8
    np.testing.assert_array_equal(picture, info["frame"])
    kept = picture.copy()
    for _ in range(5):
        _, _, _, _, info = env.step(fixed_action(env))
    np.testing.assert_array_equal(picture, kept)  # stepping does not write into an earlier render
    np.testing.assert_array_equal(env.render(), info["frame"])
    assert not np.array_equal(env.render(), kept)


def test_human_render_shows_the_true_frame_beside_the_samples_headless(make_env):
    import pygame

    env = make_env(render_mode="human", return_frame=True, color="rgb", sample_count=50)
    env.reset(seed=0)
    observation, *_, info = env.step({"buttons": RIGHT_B, "coords": make_pattern("uniform_grid", 50)})
    window = pygame.surfarray.array3d(pygame.display.get_surface()).swapaxes(0, 1)  # (rows, cols, 3)
    assert window.shape == (2 * 240, 2 * 2 * 256, 3)  # two 256-wide panels, scaled 2x
    np.testing.assert_array_equal(window[::2, :512:2], info["frame"])  # left: the true frame
    rows, cols = uv_to_pixel(observation["pixels"][:, :2])
    right = window[::2, 512::2]
    np.testing.assert_array_equal(right[rows, cols], np.rint(observation["pixels"][:, 2:] * 255))  # right: samples
    env.close()
    assert env._viewer is None


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("coords, message", [
    (np.full((500, 2), 1.5, np.float32), r"outside \[0, 1\]"),
    (np.full((500, 2), -0.01, np.float32), r"outside \[0, 1\]"),
    (np.full((500, 2), np.nan, np.float32), "NaN or infinite"),
    (np.full((500, 2), np.inf, np.float32), "NaN or infinite"),
    (np.zeros((499, 2), np.float32), r"expected \(500, 2\)"),
    (np.zeros((500,), np.float32), r"expected \(500, 2\)"),
])
def test_bad_coordinates_raise_value_errors(make_env, coords, message):
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step({"buttons": 0, "coords": coords})


def test_clip_coords_opt_in_clips_instead(make_env):
    env = make_env(clip_coords=True, sample_count=2)
    env.reset(seed=0)
    observation, *_ = env.step({"buttons": 0, "coords": np.array([[1.5, -2.0], [0.5, 0.5]], np.float32)})
    np.testing.assert_allclose(observation["pixels"][0, :2], [255.5 / 256, 0.5 / 240])


@pytest.mark.parametrize("buttons, message", [
    (7, "unknown button index 7.*7 entries.*3: right\\+B"),
    (-1, "unknown button index -1"),
    (1.5, "single integer index"),
    (np.array([1, 2]), "single integer index"),
])
def test_bad_buttons_raise_value_errors(make_env, buttons, message):
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step({"buttons": buttons, "coords": make_pattern("uniform_grid", 500)})


def test_actions_must_be_dicts_with_both_keys_and_no_others(make_env):
    env = make_env()
    env.reset(seed=0)
    for action in (3, {"buttons": 3}, [3, None]):
        with pytest.raises(ValueError, match="keys 'buttons' and 'coords'"):
            env.step(action)
    with pytest.raises(ValueError, match="unknown action key.*'cords'"):
        env.step({**fixed_action(env), "cords": make_pattern("uniform_grid", 500)})


@pytest.mark.parametrize("stage", ["9-1", "1-5", "one-one", (0, 1), "1"])
def test_unknown_stage_is_rejected(stage):
    with pytest.raises(ValueError, match="unknown stage"):
        sgaps_env.SGAPSSuperMarioBrosEnv(stage=stage)


@pytest.mark.parametrize("kwargs, message", [
    ({"color": "hsv"}, "unknown color"),
    ({"sample_count": 0}, "sample_count"),
    ({"frame_skip": 0}, "frame_skip"),
    ({"initial_pattern": "spiral"}, "initial_pattern"),
    ({"reward_mode": "reconstruction"}, r"needs a scorer.*scorer=models\.scoring\.SPTScorer\(\)"),
    ({"reward_mode": "reconstruction", "color": "rgb"}, "BaselineScorer"),
    ({"scorer": "spt"}, "scorer must be callable"),
    ({"reward_mode": "both"}, "unknown reward_mode"),
    ({"max_state_dim": 8}, "max_state_dim"),
    ({"buttons": "everything"}, "unknown button set"),
    ({"repeat_action_probability": 1.0}, "repeat_action_probability"),
    ({"render_mode": "ansi"}, "unknown render_mode"),
])
def test_bad_constructor_arguments_are_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sgaps_env.SGAPSSuperMarioBrosEnv(stage="1-1", **kwargs)


# Each bad keyword: (kwargs, the argument's name, what was given, what is expected), all in the message.
BAD_KEYWORDS = [
    ({"clip_coords": "False"}, "clip_coords", "str 'False'", "True or False"),
    ({"clip_coords": 0}, "clip_coords", "int 0", "True or False"),
    ({"return_frame": "no"}, "return_frame", "str 'no'", "True or False"),
    ({"return_frame": None}, "return_frame", "NoneType None", "True or False"),
    ({"sample_count": True}, "sample_count", "bool True", r"integer in \[1, 61440\]"),
    ({"sample_count": 500.0}, "sample_count", "float 500.0", "integer"),
    ({"sample_count": "500"}, "sample_count", "str '500'", "integer"),
    ({"sample_count": 61441}, "sample_count", "61441", r"\[1, 61440\]"),
    ({"frame_skip": True}, "frame_skip", "bool True", "integer"),
    ({"frame_skip": 4.0}, "frame_skip", "float 4.0", "integer"),
    ({"noop_max": False}, "noop_max", "bool False", "integer"),
    ({"noop_max": -1}, "noop_max", "-1", r"\[0, "),
    ({"noop_max": 2.5}, "noop_max", "float 2.5", "integer"),
    ({"max_state_dim": True}, "max_state_dim", "bool True", r"\[58, 4096\]"),
    ({"max_state_dim": 64.0}, "max_state_dim", "float 64.0", "integer"),
    ({"max_state_dim": 10**8}, "max_state_dim", "100000000", r"\[58, 4096\]"),
    ({"max_state_dim": 57}, "max_state_dim", "57", r"\[58, 4096\]"),
    ({"repeat_action_probability": True}, "repeat_action_probability", "bool True", r"\[0, 1\)"),
    ({"repeat_action_probability": "0.25"}, "repeat_action_probability", "str '0.25'", "number"),
    ({"repeat_action_probability": 0.25 + 0j}, "repeat_action_probability", "complex", "number"),
    ({"repeat_action_probability": float("nan")}, "repeat_action_probability", "nan", r"\[0, 1\)"),
    ({"repeat_action_probability": -0.1}, "repeat_action_probability", "-0.1", r"\[0, 1\)"),
    ({"sentinel": True}, "sentinel", "bool True", "finite number"),
    ({"sentinel": "-999"}, "sentinel", "str '-999'", "finite number"),
    ({"sentinel": -999 + 0j}, "sentinel", "complex", "finite number"),
    ({"sentinel": float("nan")}, "sentinel", "nan", "finite number"),
    ({"sentinel": float("-inf")}, "sentinel", "-inf", "finite number"),
    ({"color": "GRAY"}, "color", "'GRAY'", r"\['gray', 'rgb'\]"),
    ({"color": ["rgb"]}, "color", r"\['rgb'\]", r"\['gray', 'rgb'\]"),
    ({"initial_pattern": "grid"}, "initial_pattern", "'grid'", "uniform_grid"),
    ({"initial_pattern": None}, "initial_pattern", "None", "uniform_grid"),
    ({"render_mode": "rgb"}, "render_mode", "'rgb'", r"\['human', 'rgb_array'\] or None"),
    ({"reward_mode": None}, "reward_mode", "None", r"\['game', 'reconstruction'\]"),
    ({"reward_mode": "psnr"}, "reward_mode", "'psnr'", r"\['game', 'reconstruction'\]"),
    ({"buttons": 7}, "buttons", "int 7", "simple"),
    ({"buttons": ["right", "A"]}, "button combination", "'right'", r"\[\['NOOP'\], \['right', 'A'\]\]"),
    ({"buttons": [["right", "turbo"]]}, "button name", "turbo", "expected names from"),
    ({"stage": (True, 1)}, "stage", r"\(True, 1\)", "W-S"),
]


@pytest.mark.parametrize("kwargs, name, given, expected", BAD_KEYWORDS,
                         ids=[f"{key}={value!r}" for kwargs, *_ in BAD_KEYWORDS for key, value in kwargs.items()])
def test_keywords_of_the_wrong_type_or_range_name_the_argument_the_value_and_the_expectation(kwargs, name, given,
                                                                                         expected):
    kwargs = {"stage": "1-1", **kwargs}
    with pytest.raises(ValueError) as caught:
        sgaps_env.SGAPSSuperMarioBrosEnv(**kwargs)
    message = str(caught.value)
    for part in (name, given, expected):
        assert re.search(part, message), f"{part!r} not in {message!r}"


def test_numpy_scalars_of_the_right_kind_are_accepted(make_env):
    env = make_env(sample_count=np.int64(16), frame_skip=np.int32(2), max_state_dim=np.int16(60),
                   noop_max=np.uint8(0), repeat_action_probability=np.float32(0.0), sentinel=np.float64(-5),
                   clip_coords=np.bool_(True), return_frame=np.bool_(False))
    observation, info = env.reset(seed=0)
    assert observation["pixels"].shape == (16, 3) and observation["state"].shape == (60,)
    assert env.clip_coords is True and env.return_frame is False and "frame" not in info
    assert observation["state"][observation["state_mask"] == 0].max() == -5.0


@pytest.mark.parametrize("options, message", [
    ({"cords": np.zeros((4, 2), np.float32)}, r"unknown reset option\(s\) 'cords'.*\['coords', 'noops'\]"),
    ({"noops": -1}, r"reset option 'noops' must be an integer in \[0, 10000\], got -1"),
    ({"coords": np.zeros((4, 2), np.float32), "seed": 3}, r"unknown reset option\(s\) 'seed'"),
    ([("coords", np.zeros((4, 2), np.float32))], "options must be a dict or None, got list"),
    ("coords", "options must be a dict or None, got str"),
])
def test_reset_rejects_unknown_options_and_non_dicts_without_changing_the_session(make_env, options, message):
    env = make_env(sample_count=4)
    observation, _ = env.reset(seed=0)
    env.step({"buttons": RIGHT_B, "coords": np.full((4, 2), 0.5, np.float32)})
    frame_before = env.frame_ram
    with pytest.raises(ValueError, match=message):
        env.reset(seed=1, options=options)
    np.testing.assert_array_equal(env.frame_ram, frame_before)  # the game was not reset by the bad call
    env.step({"buttons": RIGHT_B, "coords": np.full((4, 2), 0.5, np.float32)})  # the episode goes on


@pytest.mark.parametrize("coords", [
    np.zeros((4, 2), dtype=bool),
    np.zeros((4, 2), dtype=np.complex64),
    np.full((4, 2), "0.5"),
    np.full((4, 2), 0.5, dtype=object),
    [[0.5, 0.5]] * 3 + [[0.5]],
], ids=["bool", "complex", "str", "object", "ragged"])
def test_coordinates_that_are_not_real_numbers_are_refused_in_step_and_reset(make_env, coords):
    env = make_env(sample_count=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="coords"):
        env.step({"buttons": 0, "coords": coords})
    with pytest.raises(ValueError, match="coords"):
        env.reset(seed=0, options={"coords": coords})


def test_integer_coordinates_are_positions(make_env):
    env = make_env(sample_count=2)
    observation, _ = env.reset(seed=0, options={"coords": np.array([[0, 0], [1, 1]], dtype=np.int64)})
    np.testing.assert_array_equal(observation["pixels"][:, :2], pixel_to_uv(np.array([0, 239]), np.array([0, 255])))


def test_reconstruction_reward_without_a_scorer_says_to_pass_one():
    for color in ("gray", "rgb"):
        with pytest.raises(ValueError, match=r"needs a scorer.*SPTScorer\(\).*BaselineScorer\('hold'\)"):
            sgaps_env.SGAPSSuperMarioBrosEnv(stage="1-1", color=color, reward_mode="reconstruction")


def test_stepping_a_finished_episode_or_before_reset_raises(make_env):
    env = make_env()
    with pytest.raises(ValueError, match="call reset"):
        env.step(fixed_action(env))
    env.reset(seed=0)
    for _ in range(300):
        _, _, terminated, _, _ = env.step(fixed_action(env))
        if terminated:
            break
    assert terminated, "holding right+B dies on the first goomba of 1-1"
    with pytest.raises(ValueError, match="episode is over"):
        env.step(fixed_action(env))


def test_reset_options_set_the_first_frames_coordinates(make_env):
    env = make_env(sample_count=3)
    coords = np.array([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]], np.float32)
    observation, _ = env.reset(seed=0, options={"coords": coords})
    np.testing.assert_allclose(observation["pixels"][:, :2], pixel_to_uv(*uv_to_pixel(coords)))


def test_state_vector_length_matches_the_documented_fields(make_env):
    observation, _ = make_env().reset(seed=0)
    assert observation["state_mask"][:len(STATE_FIELDS)].sum() >= len(STATE_FIELDS) - 5 * 5 - 3  # slots, power-up
    assert observation["state_mask"][len(STATE_FIELDS):].sum() == 0
