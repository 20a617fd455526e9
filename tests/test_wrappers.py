"""Single-space wrappers for stable-baselines3: the allocation map, both wrappers on the real emulator, PPO smoke."""
import warnings

import gymnasium as gym
import numpy as np
import pytest

from sgaps_env.state import STATE_FIELDS
from gymnasium.utils.env_checker import check_env

import sgaps_env
from agents import RandomPlayer
from models.scoring import BaselineScorer
from sgaps_env.coords import make_pattern, pixel_to_uv, uv_to_pixel
from sgaps_env.rollout import Rollout
from sgaps_env.sampler import PatternSampler
from sgaps_env.tiles import allocation_to_coords
from sgaps_env.wrappers import PlayerLearningWrapper, SamplerLearningWrapper

H, W = 240, 256
RIGHT_B = 3  # index of right+B in the "simple" button set


def tile_of(coords, tiles, height=H, width=W):
    """Row-major tile index of each coordinate, from the documented partition ``edges[i] = i * size // tiles``."""
    rows, cols = uv_to_pixel(coords, height, width)
    row_edges = np.arange(tiles + 1) * height // tiles
    col_edges = np.arange(tiles + 1) * width // tiles
    r = np.searchsorted(row_edges, rows, side="right") - 1
    c = np.searchsorted(col_edges, cols, side="right") - 1
    return r * tiles + c


def tile_counts(coords, tiles, height=H, width=W):
    return np.bincount(tile_of(coords, tiles, height, width), minlength=tiles * tiles)


def distinct_pixels(coords, height=H, width=W):
    rows, cols = uv_to_pixel(coords, height, width)
    return len(set(zip(rows.tolist(), cols.tolist())))


def one_hot(index, tiles, value=1.0):
    weights = np.zeros(tiles * tiles, dtype=np.float32)
    weights[index] = value
    return weights


# --- allocation_to_coords ------------------------------------------------------------------------


@pytest.mark.parametrize("tiles", [1, 3, 8, 17])
@pytest.mark.parametrize("count", [1, 7, 64, 500, 5000])
def test_allocation_gives_exactly_count_distinct_pixel_centres_in_the_unit_square(tiles, count):
    weights = np.random.default_rng(tiles * 1000 + count).random(tiles * tiles).astype(np.float32)
    coords = allocation_to_coords(weights, count, tiles)
    assert coords.shape == (count, 2) and coords.dtype == np.float32
    assert coords.min() >= 0.0 and coords.max() <= 1.0
    rows, cols = uv_to_pixel(coords)
    np.testing.assert_array_equal(coords, pixel_to_uv(rows, cols))  # pixel centres, coords convention
    assert distinct_pixels(coords) == count


def test_one_hot_weights_put_every_point_in_that_tiles_rectangle():
    # tiles=8 cuts the 240x256 frame into 30x32 tiles; tile 5 is row 0, column 5: y in [0, 30), x in [160, 192).
    coords = allocation_to_coords(one_hot(5, 8), 64, 8)
    rows, cols = uv_to_pixel(coords)
    assert rows.min() >= 0 and rows.max() < 30
    assert cols.min() >= 160 and cols.max() < 192
    assert distinct_pixels(coords) == 64


def test_a_tile_filled_to_capacity_gets_every_one_of_its_pixels():
    coords = allocation_to_coords(one_hot(5, 8), 30 * 32, 8)
    rows, cols = uv_to_pixel(coords)
    assert set(zip(rows.tolist(), cols.tolist())) == {(y, x) for y in range(30) for x in range(160, 192)}


@pytest.mark.parametrize("weights, count, expected", [
    ([3, 1], 64, [48, 16]),
    ([1, 1, 1], 10, [3, 4, 3]),  # quotas 3.33 each: a leftover point tied 3 ways goes to the middle one
    ([0.5, 0.3, 0.2], 7, [4, 2, 1]),  # quotas 3.5, 2.1, 1.4: floors 3, 2, 1, leftover to the largest remainder .5
    ([0.2, 0.3, 0.5], 7, [1, 2, 4]),
    ([1, 0, 2, 0, 4], 70, [10, 0, 20, 0, 40]),
])
def test_counts_per_tile_follow_the_largest_remainder_method(weights, count, expected):
    tiles = 8
    full = np.zeros(tiles * tiles, dtype=np.float32)
    full[:len(weights)] = weights
    counts = tile_counts(allocation_to_coords(full, count, tiles), tiles)
    np.testing.assert_array_equal(counts[:len(expected)], expected)
    assert counts[len(expected):].sum() == 0


def test_weights_are_scale_invariant():
    weights = np.random.default_rng(3).random(64).astype(np.float32)
    np.testing.assert_array_equal(allocation_to_coords(weights, 300, 8), allocation_to_coords(weights * 0.25, 300, 8))


def test_overflow_of_a_full_tile_goes_to_the_other_weighted_tiles():
    # tiles=16: 15x16 = 240-pixel tiles. Weights 10:1 ask for 364 and 36 of 400 points; tile 0 holds only
    # 240, so its overflow of 124 goes to tile 1, the only other tile with weight.
    weights = np.zeros(256, dtype=np.float32)
    weights[:2] = [10, 1]
    coords = allocation_to_coords(weights, 400, 16)
    counts = tile_counts(coords, 16)
    assert counts[0] == 240 and counts[1] == 160 and counts.sum() == 400
    assert distinct_pixels(coords) == 400


def test_overflow_with_no_other_weighted_tile_is_spread_evenly():
    coords = allocation_to_coords(one_hot(5, 8), 1000, 8)  # tile 5 has 960 pixels
    counts = tile_counts(coords, 8)
    assert counts[5] == 960
    others = np.delete(counts, 5)
    assert others.sum() == 40 and others.max() == 1  # one each, never piled into one tile
    assert distinct_pixels(coords) == 1000


def test_the_whole_frame_can_be_allocated():
    coords = allocation_to_coords(one_hot(0, 4), H * W, 4)
    assert distinct_pixels(coords) == H * W


def test_all_zero_weights_mean_a_uniform_allocation():
    zero = allocation_to_coords(np.zeros(64), 64 * 3 + 5, 8)
    np.testing.assert_array_equal(zero, allocation_to_coords(np.ones(64), 64 * 3 + 5, 8))
    np.testing.assert_array_equal(zero, allocation_to_coords(np.full(64, 0.5, np.float32), 64 * 3 + 5, 8))
    counts = tile_counts(zero, 8)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 197
    # The 5 leftover points tie over all 64 tiles and are spread over them: tiles floor((j + 0.5) * 64 / 5).
    np.testing.assert_array_equal(np.flatnonzero(counts == 4), [6, 19, 32, 44, 57])


def test_a_uniform_allocation_of_fewer_points_than_tiles_covers_the_whole_frame():
    counts = tile_counts(allocation_to_coords(np.zeros(64), 32, 8), 8).reshape(8, 8)
    assert counts.sum() == 32 and counts.max() == 1
    assert (counts.sum(axis=1) == 4).all()  # every band of tiles, top to bottom, gets its share


def test_the_map_is_deterministic():
    weights = np.random.default_rng(11).random(64)
    first = allocation_to_coords(weights, 500, 8)
    second = allocation_to_coords(list(weights), 500, 8)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, allocation_to_coords(weights.reshape(8, 8), 500, 8))
    first[:] = 0  # the result is a fresh array, not a cached one
    np.testing.assert_array_equal(second, allocation_to_coords(weights, 500, 8))


def test_points_inside_a_tile_are_well_spread():
    # 16 points in one 30x32 tile: a 4x4 grid is ~7.5 pixels apart; a clustered placement would be ~1.
    coords = allocation_to_coords(one_hot(9, 8), 16, 8)
    rows, cols = uv_to_pixel(coords)
    points = np.stack([rows, cols], axis=1).astype(float)
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(16) * 1e9
    assert distances.min() >= 0.8 * np.sqrt(30 * 32 / 16)
    assert np.ptp(rows) >= 20 and np.ptp(cols) >= 20  # the points cover the tile, not one corner


@pytest.mark.parametrize("weights, count, tiles, message", [
    (np.ones(63), 10, 8, "expected tiles \\* tiles = 64"),
    (-one_hot(0, 8), 10, 8, ">= 0"),
    (np.full(64, np.nan), 10, 8, "NaN"),
    (np.full(64, np.inf), 10, 8, "NaN or infinite"),
    (np.ones(64), 0, 8, "count must be"),
    (np.ones(64), H * W + 1, 8, "count must be"),
    (np.ones(1), 10, 0, "tiles must be at least 1"),
    (np.ones(241 * 241), 10, 241, "larger than the 240x256 frame"),
    (np.ones(4), 10, 2.0, "tiles must be an integer"),
])
def test_bad_allocation_arguments_raise_value_errors(weights, count, tiles, message):
    with pytest.raises(ValueError, match=message):
        allocation_to_coords(weights, count, tiles)


# --- PlayerLearningWrapper -----------------------------------------------------------------------


def rollout(env, steps, seed, actions_seed=0):
    """Observations of ``steps`` steps with random buttons, resetting (unseeded) at episode ends."""
    player = RandomPlayer(seed=actions_seed)
    observation, info = env.reset(seed=seed)
    observations = [observation]
    rewards = []
    for _ in range(steps):
        observation, reward, terminated, truncated, info = env.step(player.act(observation, info))
        observations.append(observation)
        rewards.append(reward)
        if terminated or truncated:
            observation, info = env.reset()
            observations.append(observation)
    return observations, rewards


def test_player_wrapper_spaces_are_discrete_buttons_and_a_flat_dict(make_env):
    env = PlayerLearningWrapper(make_env(sample_count=64, color="rgb", max_state_dim=60))
    assert env.action_space == gym.spaces.Discrete(7)
    assert set(env.observation_space.spaces) == {"pixels", "state", "state_mask"}
    assert env.observation_space["pixels"].shape == (64, 5)
    assert env.observation_space["state"].shape == env.observation_space["state_mask"].shape == (60,)
    state_space, env_state_space = env.observation_space["state"], env.env.observation_space["state"]
    assert state_space.low.min() > -300  # no sentinel-sized bound (the env's reaches -999)
    fields = len(sgaps_env.STATE_FIELDS)
    never_masked = env_state_space.low[:fields] != -999.0
    np.testing.assert_array_equal(state_space.low[:fields][never_masked], env_state_space.low[:fields][never_masked])
    np.testing.assert_array_equal(state_space.high[:fields], env_state_space.high[:fields])  # sentinel < 0
    field_lows = np.array([field.low for field in STATE_FIELDS], dtype=np.float32)
    # masked fields: [min(low, 0), high], since they read 0 when inactive
    np.testing.assert_array_equal(state_space.low[:fields][~never_masked], np.minimum(field_lows, 0)[~never_masked])
    assert (state_space.low < state_space.high).all()  # no degenerate dimension
    assert all(isinstance(space, gym.spaces.Box) for space in env.observation_space.spaces.values())


def test_player_wrapper_replaces_sentinels_with_zero_and_keeps_everything_else(make_env):
    # The same session through the wrapper and through the bare env (same seed, buttons and coordinates).
    wrapped = PlayerLearningWrapper(make_env(sample_count=100))
    bare = make_env(sample_count=100)
    coords = make_pattern("uniform_grid", 100)
    player = RandomPlayer(seed=5)
    observation, info = wrapped.reset(seed=3)
    raw, _ = bare.reset(seed=3, options={"coords": coords})
    saw_masked_field = False
    for _ in range(120):
        assert wrapped.observation_space.contains(observation)
        assert np.abs(observation["state"]).max() < 10.0  # no sentinel left
        np.testing.assert_array_equal(observation["pixels"], raw["pixels"])
        np.testing.assert_array_equal(observation["state_mask"], raw["state_mask"])
        valid = raw["state_mask"] > 0
        np.testing.assert_array_equal(observation["state"][valid], raw["state"][valid])
        assert (observation["state"][~valid] == 0.0).all() and (raw["state"][~valid] == -999.0).all()
        saw_masked_field |= bool((~valid[:len(sgaps_env.STATE_FIELDS)]).any())
        buttons = player.act(observation, info)
        observation, reward, terminated, _, info = wrapped.step(buttons)
        raw, raw_reward, raw_terminated, _, _ = bare.step({"buttons": buttons, "coords": coords})
        assert reward == raw_reward and terminated == raw_terminated
        if terminated:
            break
    assert saw_masked_field  # an inactive enemy slot was cleaned, not only padding


def test_player_wrapper_samples_a_fixed_pattern_at_reset_and_every_step(make_env):
    env = PlayerLearningWrapper(make_env(sample_count=80), pattern="checkerboard")
    expected = pixel_to_uv(*uv_to_pixel(make_pattern("checkerboard", 80)))
    observations, _ = rollout(env, 10, seed=0)
    for observation in observations:
        np.testing.assert_array_equal(observation["pixels"][:, :2], expected)


def test_player_wrapper_random_pattern_is_redrawn_each_step_and_seeded(make_env):
    def session(seed):
        observations, rewards = rollout(PlayerLearningWrapper(make_env(sample_count=64), pattern="random"), 30, seed)
        return np.stack([o["pixels"] for o in observations]), np.stack([o["state"] for o in observations]), rewards

    pixels, states, rewards = session(seed=42)
    again_pixels, again_states, again_rewards = session(seed=42)
    np.testing.assert_array_equal(pixels, again_pixels)
    np.testing.assert_array_equal(states, again_states)
    assert rewards == again_rewards
    other_pixels, _, _ = session(seed=43)
    assert not np.array_equal(pixels[:, :, :2], other_pixels[:, :, :2])
    assert not np.array_equal(pixels[0, :, :2], pixels[1, :, :2])  # a new draw every step
    assert not np.array_equal(pixels[0, :, :2], other_pixels[0, :, :2])  # the reset's frame is drawn too
    grid = pixel_to_uv(*uv_to_pixel(make_pattern("uniform_grid", 64)))
    assert not np.array_equal(pixels[0, :, :2], grid)  # not the env's own initial_pattern


def test_player_wrapper_samples_what_a_rollout_with_the_same_pattern_sampler_and_seed_samples(make_env):
    # "a fixed pattern, redrawn if random" has one owner: the wrapper draws with a PatternSampler, so a
    # policy trained through it sees the coordinates the recorder's Rollout would sample.
    wrapper = PlayerLearningWrapper(make_env(sample_count=48), pattern="stratified")
    assert isinstance(wrapper.sampler, PatternSampler) and wrapper.redraws_pattern
    observation, _ = wrapper.reset(seed=11)
    wrapped = [observation["pixels"]]
    for _ in range(6):
        observation, *_ = wrapper.step(RIGHT_B)
        wrapped.append(observation["pixels"])
    rollout = Rollout(make_env(sample_count=48), lambda observation: RIGHT_B, PatternSampler("stratified", 48),
                      seed=11, max_steps=6)
    direct = [step.observation["pixels"] for step in rollout]
    np.testing.assert_array_equal(np.stack(wrapped), np.stack(direct))


def test_pattern_sampler_redraws_random_patterns_only_and_continues_its_generator_on_unseeded_resets():
    fixed = PatternSampler("checkerboard", 40)
    np.testing.assert_array_equal(fixed.reset(1), fixed.next_coords())
    np.testing.assert_array_equal(fixed.reset(1), make_pattern("checkerboard", 40))
    drawn = PatternSampler("random", 40)
    first = drawn.reset(3)
    step = drawn.next_coords()
    unseeded = drawn.reset()
    again = PatternSampler("random", 40)
    np.testing.assert_array_equal(again.reset(3), first)
    np.testing.assert_array_equal(again.next_coords(), step)
    np.testing.assert_array_equal(again.reset(), unseeded)  # fixed by the first seed
    assert not np.array_equal(first, step) and not np.array_equal(first, unseeded)
    held = PatternSampler("random", 40, redraw=False)
    np.testing.assert_array_equal(held.reset(3), held.next_coords())


@pytest.mark.parametrize("args, message", [
    (("spiral", 10), "unknown sampling pattern 'spiral'"),
    ((["random"], 10), "unknown sampling pattern"),
    (("random", 0), r"count must be an integer in \[1, 61440\]"),
    (("random", True), "count must be an integer"),
    (("random", 10.0), "count must be an integer"),
    (("random", 10, "yes"), "redraw must be True, False or None"),
])
def test_pattern_sampler_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        PatternSampler(*args)


def test_player_wrapper_unseeded_resets_continue_the_seeded_draws(make_env):
    def two_episodes():
        env = PlayerLearningWrapper(make_env(sample_count=32), pattern="random")
        first, _ = env.reset(seed=5)
        second, _ = env.reset()
        return first["pixels"][:, :2], second["pixels"][:, :2]

    first, second = two_episodes()
    again_first, again_second = two_episodes()
    np.testing.assert_array_equal(first, again_first)
    np.testing.assert_array_equal(second, again_second)  # the unseeded episode is fixed by the first seed
    assert not np.array_equal(first, second)  # and it is a new draw


def test_player_wrapper_keeps_explicit_reset_coords_and_refuses_unknown_options(make_env):
    env = PlayerLearningWrapper(make_env(sample_count=2), pattern="random")
    coords = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)
    observation, _ = env.reset(seed=0, options={"coords": coords})
    np.testing.assert_array_equal(observation["pixels"][:, :2], pixel_to_uv(*uv_to_pixel(coords)))
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(seed=0, options={"cords": coords})
    with pytest.raises(ValueError, match="options must be a dict"):
        env.reset(seed=0, options=[("coords", coords)])


def test_player_wrapper_works_on_gym_make_envs_and_passes_the_reward_through():
    env = PlayerLearningWrapper(gym.make("SGAPS-SMB-1-1-v0", sample_count=32), pattern="stratified")
    try:
        observation, _ = env.reset(seed=0)
        assert env.observation_space.contains(observation)
        total = 0.0
        for _ in range(20):
            observation, reward, _, _, info = env.step(3)  # right+B
            assert reward == info["game_reward"]
            total += reward
        assert total > 0  # running right earns game reward
    finally:
        env.close()


def test_player_wrapper_rejects_bad_arguments(make_env):
    with pytest.raises(ValueError, match="unknown sampling pattern 'spiral'"):
        PlayerLearningWrapper(make_env(), pattern="spiral")
    cartpole = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="wraps SGAPS-SMB-v0"):
        PlayerLearningWrapper(cartpole)
    cartpole.close()
    env = PlayerLearningWrapper(make_env(sample_count=16))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="single integer button index"):
        env.step(np.array([1, 2]))
    with pytest.raises(ValueError, match="unknown button index 9"):
        env.step(9)


# --- SamplerLearningWrapper ----------------------------------------------------------------------


def test_sampler_wrapper_reward_is_the_reconstruction_score_and_game_reward_stays_in_info(make_env):
    env = SamplerLearningWrapper(make_env(sample_count=64, scorer=BaselineScorer(), return_frame=True),
                                 player=lambda observation: 3, tiles=4)  # always right+B
    assert env.action_space == gym.spaces.Box(0.0, 1.0, (16,), np.float32)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    game_total = 0.0
    for _ in range(15):
        observation, reward, _, _, info = env.step(rng.random(16).astype(np.float32))
        assert reward == info["reconstruction_score"]
        # Recomputed independently from the true frame and the samples the agent saw.
        assert reward == pytest.approx(BaselineScorer()(info["frame"], observation["pixels"], observation["state"],
                                                        observation["state_mask"]))
        assert info["player_action"] == 3
        game_total += info["game_reward"]
    assert game_total > 0  # the game reward is still reported


def test_sampler_wrapper_concentrated_budget_samples_the_chosen_tile(make_env):
    env = SamplerLearningWrapper(make_env(sample_count=100, scorer=BaselineScorer()), player=RandomPlayer(seed=1))
    observation, _ = env.reset(seed=0)
    # reset: the uniform allocation (not the env's own uniform_grid initial pattern)
    np.testing.assert_array_equal(observation["pixels"][:, :2], allocation_to_coords(np.zeros(64), 100, 8))
    for tile in (5, 42, 63):
        observation, *_ = env.step(one_hot(tile, 8))
        assert env.observation_space.contains(observation)
        assert (tile_of(observation["pixels"][:, :2], 8) == tile).all()
        assert distinct_pixels(observation["pixels"][:, :2]) == 100
    observation, *_ = env.step(np.array([0.3, 0.1] + [0.0] * 62, dtype=np.float32))
    assert tile_counts(observation["pixels"][:, :2], 8).tolist() == [75, 25] + [0] * 62


def test_concentrating_the_budget_in_one_tile_lowers_the_score(make_env):
    # A one-tile budget leaves most of the frame unsampled, so the score must fall below the uniform one.
    env = SamplerLearningWrapper(make_env(sample_count=200, scorer=BaselineScorer()), player=lambda o: 0)
    env.reset(seed=0)
    _, uniform, *_ = env.step(np.zeros(64, dtype=np.float32))
    _, concentrated, *_ = env.step(one_hot(0, 8))
    assert concentrated < uniform - 1.0


class RecordingPlayer:
    name = "recording"

    def __init__(self):
        self.seeds, self.seen = [], []

    def reset(self, seed=None):
        self.seeds.append(seed)

    def act(self, observation, info):
        self.seen.append((observation, info))
        return 1


@pytest.mark.parametrize("player_observation, padding", [("env", -999.0), ("cleaned", 0.0)])
def test_sampler_wrapper_drives_its_player(make_env, player_observation, padding):
    player = RecordingPlayer()
    env = SamplerLearningWrapper(make_env(sample_count=32, scorer=BaselineScorer()), player,
                                 player_observation=player_observation)
    observation, info = env.reset(seed=7)
    assert player.seeds == [7]
    next_observation, _, _, _, next_info = env.step(np.ones(64, dtype=np.float32))
    env.step(np.ones(64, dtype=np.float32))
    assert len(player.seen) == 2 and next_info["player_action"] == 1
    # The player acted on the previous step's observation and info.
    np.testing.assert_array_equal(player.seen[0][0]["pixels"], observation["pixels"])
    np.testing.assert_array_equal(player.seen[1][0]["pixels"], next_observation["pixels"])
    assert player.seen[0][1]["frame_index"] == info["frame_index"]
    assert player.seen[0][0]["state"][-1] == padding
    env.reset()
    assert player.seeds == [7, None]


def test_sampler_wrapper_works_on_gym_make_envs():
    env = SamplerLearningWrapper(gym.make("SGAPS-SMB-v0", stage="1-1", sample_count=32, scorer=BaselineScorer()),
                                 player=RandomPlayer(seed=0), tiles=2)
    try:
        env.reset(seed=0)
        observation, reward, _, _, info = env.step(np.array([0, 0, 1, 0], dtype=np.float32))
        assert reward == info["reconstruction_score"]
        assert (uv_to_pixel(observation["pixels"][:, :2])[0] >= 120).all()  # tile 2: the bottom-left quarter
    finally:
        env.close()


def test_sampler_wrapper_rejects_bad_arguments(make_env):
    with pytest.raises(ValueError, match=r"scorer=models.scoring.BaselineScorer\(\)"):
        SamplerLearningWrapper(make_env(), player=RandomPlayer())
    no_scorer = gym.make("SGAPS-SMB-v0", stage="1-1")
    with pytest.raises(ValueError, match="no scorer"):
        SamplerLearningWrapper(no_scorer, player=RandomPlayer())
    no_scorer.close()
    scored = make_env(scorer=BaselineScorer())
    with pytest.raises(ValueError, match="player must be a Player"):
        SamplerLearningWrapper(scored, player=42)
    with pytest.raises(ValueError, match="tiles must be at least 1"):
        SamplerLearningWrapper(scored, player=RandomPlayer(), tiles=0)
    with pytest.raises(ValueError, match="larger than the 240x256 frame"):
        SamplerLearningWrapper(scored, player=RandomPlayer(), tiles=300)
    with pytest.raises(ValueError, match="player_observation"):
        SamplerLearningWrapper(scored, player=RandomPlayer(), player_observation="raw")
    env = SamplerLearningWrapper(scored, player=RandomPlayer())
    with pytest.raises(ValueError, match="reset"):
        env.step(np.ones(64, dtype=np.float32))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=">= 0"):
        env.step(-np.ones(64, dtype=np.float32))


# --- conformance and stable-baselines3 ------------------------------------------------------------


@pytest.mark.parametrize("build", [
    lambda make_env: PlayerLearningWrapper(make_env(sample_count=64)),
    lambda make_env: PlayerLearningWrapper(make_env(sample_count=64), pattern="random"),
    lambda make_env: SamplerLearningWrapper(make_env(sample_count=64, scorer=BaselineScorer()), RandomPlayer()),
], ids=["player-grid", "player-random", "sampler"])
def test_gymnasium_env_checker_passes(make_env, build):
    env = build(make_env)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    # The only warning allowed is the checker's generic note that it was handed a wrapper.
    messages = [str(w.message) for w in caught if "different from the unwrapped version" not in str(w.message)]
    assert messages == []


def ppo_smoke(env):
    from stable_baselines3 import PPO

    model = PPO("MultiInputPolicy", env, n_steps=64, batch_size=32, n_epochs=1, device="cpu", seed=0)
    model.learn(total_timesteps=128)
    assert model.num_timesteps >= 128
    observation, _ = env.reset(seed=1)
    action, _ = model.predict(observation, deterministic=True)
    assert env.action_space.contains(action if action.shape else action.item())
    env.step(action)  # the predicted action is one the wrapper accepts
    return action


def test_ppo_runs_on_the_player_wrapper(make_env):
    ppo_smoke(PlayerLearningWrapper(make_env(sample_count=64), pattern="random"))


def test_ppo_runs_on_the_sampler_wrapper(make_env):
    action = ppo_smoke(SamplerLearningWrapper(make_env(sample_count=64, scorer=BaselineScorer()), RandomPlayer(seed=0)))
    assert action.shape == (64,)


def test_players_need_reset_and_act_but_no_name():
    from sgaps_env.player import CallablePlayer, as_player

    class Nameless:
        def reset(self, seed=None):
            pass

        def act(self, observation, info):
            return 2

    nameless = Nameless()
    assert as_player(nameless) is nameless
    wrapped = as_player(lambda observation: 4)
    assert isinstance(wrapped, CallablePlayer) and wrapped.act({}, {}) == 4
    with pytest.raises(TypeError, match="reset\\(seed\\) and act"):
        as_player(42)
