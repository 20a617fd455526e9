"""The block-weighted description, the uncertainty policy on the tile reconstructor's memory, the learned
sampler's features, its replay environment and its training, on real 1-1 play."""
import numpy as np
import pytest
import tyro

from agents.policies import (PLAN_FEATURES, SAMPLER_ACTIONS, UNCERTAINTY_WEIGHTS, UncertaintyPolicy, action_to_plan,
                             action_to_weights, make_policy, next_camera, plan_features)
from models.baselines import make_baseline
from models.policy_replay import replay_offline
from models.tile_reconstructor import KNOWLEDGE_CLASSES, TileReconstructor, load_codebook
from sgaps_env.coords import FRAME_WIDTH, extract_pixels, make_pattern, uv_to_pixel
from sgaps_env.descriptions import (BLOCK_WEIGHTS, GRID_COLUMNS, GRID_ROWS, BlockPlan, ClientContext,
                                    block_regions, coords_from_description, inclusion_probabilities)
from sgaps_env.sprites import HUD_ROWS, box_mask, predict_boxes
from sgaps_env.wire import UVCoordinates, decode

COUNT = 300


@pytest.fixture(scope="module")
def codebook():
    return load_codebook()[0]


@pytest.fixture(scope="module")
def session(heuristic_play_1_1):
    """Heuristic play of 1-1 (conftest): ``(frames, states, masks)``."""
    return heuristic_play_1_1


def classes_of(coords, offset):
    """The block (flat index into a plan's classes, -1 on the status bar) of each sampled pixel."""
    rows, cols = uv_to_pixel(coords)
    return block_regions(offset)[0][rows * FRAME_WIDTH + cols]


# --- the description -----------------------------------------------------------------------------------


def test_inclusion_probabilities_follow_the_weights_capped_at_one():
    chances = inclusion_probabilities(np.array([1.0, 1, 1, 100, 0, 0]), 2)
    np.testing.assert_allclose(chances, [1 / 3, 1 / 3, 1 / 3, 1, 0, 0])
    np.testing.assert_allclose(inclusion_probabilities(np.array([1.0, 1, 1, 100, 0, 0]), 5), [1, 1, 1, 1, 0.5, 0.5])
    weights = np.random.default_rng(0).pareto(1.0, 5000)
    chances = inclusion_probabilities(weights, 700)
    assert chances.max() <= 1 and chances.sum() == pytest.approx(700)
    capped = chances < 1
    np.testing.assert_allclose(chances[capped] / weights[capped], (chances[capped] / weights[capped])[0])


def test_a_block_plan_places_samples_by_class_weight_and_survives_the_wire():
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 4, (GRID_ROWS, GRID_COLUMNS))
    plan = BlockPlan(7, classes, (0, 10, 40, 160, 0, 0))
    data = UVCoordinates(3, description=plan.to_description(99)).encode()
    assert len(data) <= 128
    coords = coords_from_description(decode(data).description, 500, ClientContext())
    assert coords.shape == (500, 2) and len({tuple(c) for c in coords.tolist()}) == 500
    np.testing.assert_array_equal(coords, coords_from_description(plan.to_description(99), 500, ClientContext()))
    blocks = classes_of(coords, 7)
    assert (blocks >= 0).all(), "a status bar of weight 0 gets no samples"
    drawn = np.bincount(classes.reshape(-1)[blocks], minlength=4)
    area = np.bincount(classes.reshape(-1)[block_regions(7)[0][block_regions(7)[0] >= 0]], minlength=4)
    assert drawn[0] == 0
    expected = 500 * np.array([0, 10, 40, 160]) * area / (np.array([0, 10, 40, 160]) * area).sum()
    np.testing.assert_allclose(drawn, expected, atol=GRID_ROWS * GRID_COLUMNS / 4 + 1)  # systematic: within 1 a block


def test_a_block_plan_follows_the_clients_sprite_boxes(session):
    frames, states, masks = session
    context = ClientContext()
    step = next(t for t in range(1, len(states)) if len(predict_boxes(states[t], masks[t], states[t - 1], masks[t - 1])) >= 2)
    context.advance(states[step - 1], masks[step - 1])
    context.advance(states[step], masks[step])
    plan = BlockPlan(0, np.zeros((GRID_ROWS, GRID_COLUMNS)), (1, 1, 1, 1, 255, 1))
    rows, cols = uv_to_pixel(coords_from_description(plan.to_description(5), COUNT, context))
    boxes = box_mask(predict_boxes(states[step], masks[step], states[step - 1], masks[step - 1]))
    boxes[:HUD_ROWS] = False
    inside = boxes[rows, cols].mean()
    assert inside > 0.8 > boxes.mean() * 10, "the client's own predicted boxes take the sprite weight"


@pytest.mark.parametrize("change, message", [
    ({"x": 16}, "'x' must be in \\[0, 15\\]"),
    ({"t": bytes(10)}, "must be 56 bytes"),
    ({"c": [1, 2, 3]}, "list of 6 integers"),
    ({"c": [1, 2, 3, 4, 5, 256]}, "in \\[0, 255\\]"),
    ({"s": -1}, "'s' must be in"),
])
def test_malformed_block_plans_are_refused(change, message):
    description = {**BlockPlan(0, np.zeros((GRID_ROWS, GRID_COLUMNS)), (1,) * BLOCK_WEIGHTS).to_description(1), **change}
    with pytest.raises(ValueError, match=message):
        coords_from_description(description, COUNT, ClientContext())


# --- what the memory knows, and the uncertainty policy -------------------------------------------------------------


def test_block_knowledge_says_what_the_memory_knows(session, codebook):
    frames, states, masks = session
    reconstructor = TileReconstructor(codebook)
    camera = next_camera(states[0], None)
    assert (reconstructor.block_knowledge(states[0], camera) == KNOWLEDGE_CLASSES.index("unseen")).all()
    left = make_pattern("random", 20000, np.random.default_rng(0))
    left = left[left[:, 0] < 0.5]  # the screen's left half only, densely
    reconstructor.reconstruct(extract_pixels(frames[0], left, "rgb"), states[0], masks[0])
    knowledge = reconstructor.block_knowledge(states[0], camera)
    assert (knowledge[:, -4:] == KNOWLEDGE_CLASSES.index("unseen")).all(), "the right half was never sampled"
    assert (knowledge[:, :7] == KNOWLEDGE_CLASSES.index("confirmed")).mean() > 0.8, "densely sampled blocks are named"
    assert (reconstructor.block_knowledge(states[0], camera + 4096) == 3).all(), "pages never sampled are unseen"


def test_uncertainty_policy_skips_what_is_known_and_beats_random(session, codebook):
    frames, states, masks = session
    scores, spent = {}, {}
    for name in ("random", "uncertainty"):
        reconstructor = TileReconstructor(codebook)
        policy = make_policy(name, COUNT, reconstructor=reconstructor)
        rows, _ = replay_offline(policy, reconstructor, frames[:80], states[:80], masks[:80], "rgb", seed=3,
                                 score_every=4, with_ssim=False)
        scores[name] = np.mean([r["psnr"] for r in rows])
        assert all(r["downlink_bytes"] <= 128 for r in rows)
        if name == "uncertainty":
            plan = BlockPlan.from_description(policy.description)  # the last frame's plan, as the client reads it
            coords = coords_from_description(policy.description, COUNT, policy.context)
            context = policy.context
            boxes = box_mask(predict_boxes(context.state, context.state_mask, context.previous_state,
                                           context.previous_mask)).reshape(-1)
            rows, cols = uv_to_pixel(coords)
            blocks = classes_of(coords, plan.offset)[~boxes[rows * FRAME_WIDTH + cols]]
            confirmed = plan.classes.reshape(-1)[blocks[blocks >= 0]] == 0
            spent = confirmed.mean(), (plan.classes == 0).mean()
    assert scores["uncertainty"] > scores["random"] + 3, scores
    assert spent[0] < spent[1] / 3, f"{spent[0]:.0%} of the samples on confirmed blocks that cover {spent[1]:.0%}"


def test_novelty_counts_the_guesses_that_later_samples_contradict(session, codebook):
    frames, states, masks = session
    reconstructor = TileReconstructor(codebook)
    assert reconstructor.novelty() == (1 / 20, 0.0), "nothing sampled: the prior's failure rate, nothing unmatched"
    sparse = make_pattern("random", 600, np.random.default_rng(0))
    reconstructor.reconstruct(extract_pixels(frames[0], sparse, "rgb"), states[0], masks[0])
    again = make_pattern("random", 600, np.random.default_rng(1))
    reconstructor.reconstruct(extract_pixels(frames[0], again, "rgb"), states[0], masks[0])
    checked, failed = reconstructor._guesses_checked, reconstructor._guesses_failed
    assert checked > 20 and failed <= checked // 10, "the same frame again confirms what few samples named"
    assert reconstructor.novelty()[1] < 0.1, "1-1's blocks are in the codebook"
    inverted = 255 - frames[0]  # the same state, colours no block of the codebook has
    reconstructor.reconstruct(extract_pixels(inverted, make_pattern("random", 600, np.random.default_rng(2)), "rgb"),
                              states[0], masks[0])
    assert reconstructor._guesses_failed - failed > 20, "samples that contradict guessed blocks count as failures"
    assert reconstructor.novelty()[0] > 0.2 and reconstructor.novelty()[1] > 0.1
    reconstructor.reset()
    assert reconstructor.novelty() == (1 / 20, 0.0)


def test_the_uncertainty_policy_needs_the_tile_reconstructors_memory():
    with pytest.raises(ValueError, match="--reconstructor tiles"):
        UncertaintyPolicy(COUNT, make_baseline("hold"))
    with pytest.raises(ValueError, match="reconstructor="):
        make_policy("uncertainty", COUNT)


# --- the learned sampler ----------------------------------------------------------------------------------------


def test_actions_correct_the_uncertainty_policys_weights():
    assert action_to_weights(np.zeros(BLOCK_WEIGHTS)) == UNCERTAINTY_WEIGHTS
    assert action_to_weights(np.zeros(BLOCK_WEIGHTS), base=(1, 2, 4, 8, 16, 32)) == (8, 16, 32, 64, 128, 255)
    weights = action_to_weights(np.array([0, 0, 0, 0, 5.0, 0]), base=(64, 64, 64, 64, 64, 64))  # clipped to [-1, 1]
    assert weights == (4, 4, 4, 4, 255, 4)
    with pytest.raises(ValueError, match="6 weights"):
        action_to_weights(np.zeros(4))


def test_the_last_action_moves_the_camera_prediction():
    assert action_to_plan(np.zeros(SAMPLER_ACTIONS)) == (UNCERTAINTY_WEIGHTS, 1.0)
    assert action_to_plan(np.r_[np.zeros(BLOCK_WEIGHTS), 0.5])[1] == 2.0
    assert action_to_plan(np.r_[np.zeros(BLOCK_WEIGHTS), -1.0])[1] == 0.0, "never behind the last state"
    assert action_to_plan(np.r_[np.zeros(BLOCK_WEIGHTS), 7.0])[1] == 3.0, "clipped to [-1, 1]"
    with pytest.raises(ValueError, match="lookahead"):
        action_to_plan(np.zeros(BLOCK_WEIGHTS))


def test_plan_features_show_the_knowledge_map_and_the_sprites(session, codebook):
    frames, states, masks = session
    reconstructor = TileReconstructor(codebook)
    features = plan_features(reconstructor, states[40], masks[40], states[39], masks[39])
    assert features.shape == (PLAN_FEATURES,) and features.dtype == np.float32
    maps = features[:5 * GRID_ROWS * GRID_COLUMNS].reshape(5, GRID_ROWS, GRID_COLUMNS)
    assert (maps[3] == 1).all(), "an empty memory: every block unseen"
    assert maps[4].max() > 0.1, "Mario's box covers part of a block"
    reconstructor.reconstruct(extract_pixels(frames[40], make_pattern("random", 30000, np.random.default_rng(0)), "rgb"),
                              states[40], masks[40])
    maps = plan_features(reconstructor, states[40], masks[40], states[39], masks[39])[:5 * GRID_ROWS * GRID_COLUMNS]
    assert maps.reshape(5, GRID_ROWS, GRID_COLUMNS)[0].mean() > 0.7, "a densely sampled screen is confirmed"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from agents import collect

    data = tmp_path_factory.mktemp("sampler") / "train.h5"
    collect.main(tyro.cli(collect.Args, args=["--output", str(data), "--no-progress", "--max-steps", "30",
                                              "--episodes", "1", "--player", "run_right", "--color", "rgb",
                                              "--stages", "1-1"]))
    return data


def test_replay_env_rewards_the_gain_over_the_uncertainty_policy(recorded, codebook):
    from gymnasium.utils.env_checker import check_env

    from agents.sampler_env import SamplerReplayEnv
    from sgaps_env.session_file import list_sessions

    import warnings

    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = SamplerReplayEnv(list_sessions([recorded]), {1: codebook}, count=COUNT, steps=20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
        sb3_check_env(env)
    assert not caught, [str(w.message) for w in caught]  # a flat bounded Box and a symmetric [-1, 1] action
    same = np.zeros(SAMPLER_ACTIONS)
    env.reset(seed=0)
    rewards = [env.step(same)[1] for _ in range(10)]
    assert rewards == [0.0] * 10, "the reference's own weights gain nothing"
    env.reset(seed=0)
    worse = np.array([-1.0, -1, -1, -1, -1, 1, 0])  # nearly everything on the status bar
    gains = [env.step(worse)[4]["gain_db"] for _ in range(15)]
    assert np.mean(gains) < -5, gains
    truncated = False
    while not truncated:
        *_, truncated, info = env.step(worse)
        gains.append(info["gain_db"])
    assert len(gains) == 19 and info["episode_gain_db"] == pytest.approx(np.mean(gains)), "the mean over the episode"
    penalised = SamplerReplayEnv(list_sessions([recorded]), {1: codebook}, count=COUNT, steps=20, action_penalty=2.0)
    penalised.reset(seed=0)
    _, reward, _, _, info = penalised.step(worse)
    assert reward == pytest.approx((info["gain_db"] - 2.0 * 6) / 10), "2 dB per unit of the squared corrections"
    penalised.reset(seed=0)
    ahead = np.r_[np.zeros(BLOCK_WEIGHTS), 1.0]  # the camera 3 frames ahead costs nothing
    _, reward, _, _, info = penalised.step(ahead)
    assert info["lookahead"] == 3.0 and reward == pytest.approx(info["gain_db"] / 10)


def test_replay_env_draws_one_of_a_worlds_codebooks_per_episode(recorded, codebook, session):
    from agents.sampler_env import SamplerReplayEnv
    from models.tile_reconstructor import CodebookCounter
    from sgaps_env.session_file import list_sessions

    frames, states, masks = session
    counter = CodebookCounter()
    counter.add(frames[:3], states[:3], masks[:3])  # a codebook of 1-1's first screen only
    small = counter.codebook(min_count=1)
    env = SamplerReplayEnv(list_sessions([recorded]), {1: [codebook, small]}, count=COUNT, steps=20)
    drawn = {}
    for seed in range(12):
        observation, info = env.reset(seed=seed)
        for _ in range(18):
            observation, reward, *_ = env.step(np.zeros(SAMPLER_ACTIONS))
            assert reward == 0.0, "the reference replays with the episode's own codebook"
        drawn.setdefault(env._book, []).append(observation[-2:])
    assert set(drawn) == {0, 1}, "both codebooks are drawn"
    assert np.mean(drawn[1], axis=0)[1] > np.mean(drawn[0], axis=0)[1], "the small codebook matches fewer blocks"
    with pytest.raises(ValueError, match="empty list of codebooks"):
        SamplerReplayEnv(list_sessions([recorded]), {1: []})


def test_replay_env_refuses_held_out_worlds_and_missing_codebooks(recorded, codebook):
    from agents.sampler_env import SamplerReplayEnv
    from sgaps_env.session_file import list_sessions

    with pytest.raises(ValueError, match="no codebook for world"):
        SamplerReplayEnv(list_sessions([recorded]), {4: codebook})
    with pytest.raises(ValueError, match="recorded sessions"):
        SamplerReplayEnv([], {1: codebook})


def test_train_sampler_writes_a_model_the_learned_policy_plays(tmp_path, recorded, session):
    from experiments import train_sampler

    frames, states, masks = session
    final = train_sampler.main(tyro.cli(train_sampler.Args, args=[
        "--data", str(recorded), "--worlds", "1", "--codebooks", "1=models/checkpoints/tiles-smb1-worlds1-4.npz",
        "--output", str(tmp_path / "run"), "--envs", "1", "--timesteps", "40", "--n-steps", "20", "--batch-size", "20",
        "--episode-steps", "12", "--checkpoint-every", "20", "--sample-count", str(COUNT), "--no-progress"]))
    run = tmp_path / "run"
    assert final.is_file() and (run / "config.json").is_file() and (run / "learning_curve.png").is_file()
    assert list((run / "checkpoints").glob("sampler_*_steps.zip"))
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    reconstructor = TileReconstructor(load_codebook()[0])
    policy = make_policy("learned", COUNT, learned_path=final, reconstructor=reconstructor)
    rows, _ = replay_offline(policy, reconstructor, frames[:12], states[:12], masks[:12], "rgb", seed=0, score_every=3,
                             with_ssim=False)
    assert all(r["downlink_bytes"] <= 128 for r in rows) and len(rows) == 4
    with pytest.raises(ValueError, match="train_sampler"):
        make_policy("learned", COUNT, learned_path=tmp_path / "missing.zip", reconstructor=reconstructor)
    from stable_baselines3 import PPO

    model = PPO.load(final, device="cpu")
    del model.sgaps_sampler
    model.save(tmp_path / "bare.zip")
    with pytest.raises(ValueError, match="which weights its actions correct"):
        make_policy("learned", COUNT, learned_path=tmp_path / "bare.zip", reconstructor=reconstructor)


def test_the_shipped_sampler_loads_and_plays(session, codebook):
    from agents.policies import DEFAULT_SAMPLER

    frames, states, masks = session
    assert DEFAULT_SAMPLER.is_file() and DEFAULT_SAMPLER.stat().st_size < 10 * 2 ** 20
    reconstructor = TileReconstructor(codebook)
    policy = make_policy("learned", COUNT, reconstructor=reconstructor)  # the shipped one by default
    assert policy.path == DEFAULT_SAMPLER and len(policy.base_weights) == BLOCK_WEIGHTS
    rows, _ = replay_offline(policy, reconstructor, frames[:30], states[:30], masks[:30], "rgb", seed=0,
                             score_every=5, with_ssim=False)
    assert all(r["downlink_bytes"] <= 128 for r in rows)
    random_reconstructor = TileReconstructor(codebook)
    random_rows, _ = replay_offline(make_policy("random", COUNT), random_reconstructor, frames[:30], states[:30],
                                    masks[:30], "rgb", seed=0, score_every=5, with_ssim=False)
    assert np.mean([r["psnr"] for r in rows]) > np.mean([r["psnr"] for r in random_rows])


def test_fast_block_order_is_its_own_draw_and_both_ends_agree():
    """``o: 1`` travels in the description and selects the row-wise order: same pixels from the description on
    the client, another draw than the default (which stays the published one), the same spread over blocks."""
    from sgaps_env.descriptions import _shuffled_by_region

    classes = np.random.default_rng(1).integers(0, 4, (GRID_ROWS, GRID_COLUMNS)).astype(np.uint8)
    fast, slow = BlockPlan(7, classes, (5, 128, 128, 255, 128, 5), True), BlockPlan(7, classes, (5, 128, 128, 255, 128, 5))
    assert fast.to_description(3)["o"] == 1 and "o" not in slow.to_description(3)
    context = ClientContext()
    fast_coords = coords_from_description(fast.to_description(3), 500, context)
    slow_coords = coords_from_description(slow.to_description(3), 500, context)
    again = coords_from_description(decode(UVCoordinates(1, description=fast.to_description(3)).encode()).description,
                                    500, context)
    assert np.array_equal(fast_coords, again) and not np.array_equal(fast_coords, slow_coords)
    _, region = block_regions(7)
    order = _shuffled_by_region(7, np.random.default_rng(0))
    assert np.array_equal(np.sort(order), np.arange(region.size)) and np.all(np.diff(region[order]) >= 0)
    flat = [np.ravel_multi_index(uv_to_pixel(c), (240, FRAME_WIDTH)) for c in (fast_coords, slow_coords)]
    per_block = [np.bincount(block_regions(7)[0][f] + 1, minlength=GRID_ROWS * GRID_COLUMNS + 1) for f in flat]
    assert np.abs(per_block[0] - per_block[1]).max() <= 2  # both place each block's expected count, within one
    with pytest.raises(ValueError, match="'o'"):
        coords_from_description({**fast.to_description(3), "o": 2}, 500, context)



@pytest.mark.parametrize("weights, count", [((5, 128, 128, 255, 128, 5), 500), ((0, 0, 0, 0, 0, 0), 500),
                                            ((0, 0, 0, 0, 0, 3), 300), ((255, 0, 0, 0, 0, 0), 5000),
                                            ((1, 2, 3, 4, 5, 6), 61_000)])
def test_fast_draw_solves_the_same_chances_and_picks_distinct_pixels(weights, count):
    """The fast draw's chances, solved on the weight levels, are those of ``inclusion_probabilities`` on every
    pixel; it returns ``count`` distinct pixels, with the expected number in each block (within one)."""
    from sgaps_env.descriptions import _level_chances

    rng = np.random.default_rng(4)
    classes = rng.integers(0, 4, (GRID_ROWS, GRID_COLUMNS)).astype(np.uint8)
    plan = BlockPlan(9, classes, weights, True)
    block, _ = block_regions(9)
    levels = np.where(block >= 0, classes.reshape(-1)[np.maximum(block, 0)], BLOCK_WEIGHTS - 1)
    table = np.asarray(weights, np.float64)
    per_pixel = table[levels]
    expected = inclusion_probabilities(per_pixel if per_pixel.any() else np.ones_like(per_pixel), count)
    np.testing.assert_allclose(_level_chances(levels, table, count)[levels], expected, atol=1e-9)
    coords = coords_from_description(plan.to_description(11), count, ClientContext())
    flat = np.ravel_multi_index(uv_to_pixel(coords), (240, FRAME_WIDTH))
    assert len(np.unique(flat)) == count
    region = block_regions(9)[1]
    drawn = np.bincount(region[flat], minlength=region.max() + 1)
    wanted = np.bincount(region, weights=expected, minlength=region.max() + 1)
    assert np.all(np.abs(drawn - wanted) <= 1.0 + 1e-6)
