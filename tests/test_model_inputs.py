"""What the models accept: the gray path end to end (prior, SPT, training stream), the SPT's checks on
each frame's input, the memory's bounds, and checkpoint checks that run before anything is built."""

import numpy as np
import pytest
import torch

from agents import HeuristicPlayer
from models.baselines import make_baseline
from models.evaluation import evaluate_sessions
from models.memory import MAX_LEVEL_WIDTH, PAGE_WIDTH, MemoryBank, MemoryConfig, StagePriors
from models.metrics import psnr
from models.spt import (SPTReconstructor, SparsePixelTransformer, load_checkpoint, save_checkpoint,
                        spt_config)
from models.stream import ReconstructionStream, StreamConfig
from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, extract_pixels, make_pattern, uv_to_pixel
from sgaps_env.env import SGAPSSuperMarioBrosEnv
from sgaps_env.rollout import Rollout
from sgaps_env.sampler import PatternSampler
from sgaps_env.session_file import SPLITS, SessionFile, SessionRecorder, list_sessions, session_seed
from sgaps_env.sprites import HUD_ROWS
from sgaps_env.state import STATE_FIELDS, STATE_INDEX

STEPS = 80  # x 4 emulated frames per step


@pytest.fixture(scope="module")
def gray_session(tmp_path_factory):
    """One gray session of 1-1 played by the RAM-aware runner, with true frames, in a tmp session file."""
    path = tmp_path_factory.mktemp("gray") / "gray.h5"
    env = SGAPSSuperMarioBrosEnv(stage="1-1", color="gray", sample_count=400, return_frame=True)
    recorder = SessionRecorder("smb1-1-1", "gray-0", {"env_config": {"color": "gray"}})
    try:
        for step in Rollout(env, HeuristicPlayer(seed=0), PatternSampler("random", 400), seed=0, max_steps=STEPS):
            recorder.add(step.observation, step.info, step.buttons, step.reward, step.terminated, step.truncated)
    finally:
        env.close()
    SessionFile(path, create=True).add(recorder.finish())
    return path


@pytest.fixture(scope="module")
def gray_priors(gray_session):
    return StagePriors.from_session_files(gray_session, split=None, progress=False)


@pytest.fixture(scope="module")
def recorded(gray_session):
    """``(pixels (T, N, 3), frames (T, H, W, 3) uint8, gray truth (T, H, W, 1), state, state_mask)``."""
    (session,) = list_sessions(gray_session)
    return (session.pixels(), session.frames(), session.frame_values(color="gray"), *session.states())


def gray_spt(priors=None):
    torch.manual_seed(0)
    model = SparsePixelTransformer(spt_config("tiny", channels=1)).eval()
    return SPTReconstructor.from_model(model, priors if priors is not None else StagePriors(), MemoryConfig())


# --- the gray path -------------------------------------------------------------------------------------


def test_gray_spt_with_a_level_prior_gives_luma_in_range_far_above_nearest(gray_priors, recorded):
    """An untrained SPT returns its memory's canvas, so this scores the prior's luma: divided by 255 twice, a
    white pixel was 0.004 and the frame scored below the nearest-sample mosaic."""
    assert "1-1-0-ground" in gray_priors
    pixels, _, truths, states, masks = recorded
    spt, nearest = gray_spt(gray_priors), make_baseline("nearest")
    scores = {"spt": [], "nearest": []}
    for t in range(0, len(states), 10):
        output = spt.reconstruct(pixels[t], states[t], masks[t])
        assert output.shape == (FRAME_HEIGHT, FRAME_WIDTH, 1)
        assert output.min() >= 0.0 and output.max() <= 1.0
        assert abs(float(output.mean()) - float(truths[t].mean())) < 0.05
        scores["spt"].append(psnr(output, truths[t]))
        scores["nearest"].append(psnr(nearest.reconstruct(pixels[t], states[t], masks[t]), truths[t]))
    assert np.mean(scores["spt"]) > np.mean(scores["nearest"]) + 8.0, scores


def test_gray_training_stream_targets_and_inputs_are_true_luma(gray_session, gray_priors, recorded):
    frame_means = recorded[2].mean(axis=(1, 2, 3))
    stream = ReconstructionStream([gray_session], gray_priors, StreamConfig(
        channels=1, split=None, budget=(200, 300), pairs_per_batch=2, pairs_per_epoch=4, shuffle_buffer=4,
        concurrent_sessions=1, drop_max=0.0))
    batches = list(stream)
    assert len(batches) == 2
    for batch in batches:
        target, inputs = batch["target"], batch["inputs"]
        assert target.shape == (4, 1, FRAME_HEIGHT, FRAME_WIDTH)
        assert target.min() >= 0 and target.max() <= 1
        for frame_target in target:
            assert frame_means.min() - 0.01 <= float(frame_target.mean()) <= frame_means.max() + 0.01
        values = inputs["token_values"]
        assert values.min() >= 0 and values.max() <= 1
        xy = inputs["token_xy"][0]
        torch.testing.assert_close(target[0][:, xy[:, 1], xy[:, 0]].T, values[0], atol=1 / 255, rtol=0)
        # the memory's canvas (the prior's luma where it is confident) agrees with the target
        confident = inputs["confidence"] > 0.5
        assert confident.float().mean() > 0.3
        assert (inputs["canvas"] - target).abs()[confident].mean() < 0.05


def test_a_stream_over_a_split_without_sessions_says_so(gray_session):
    (session,) = list_sessions(gray_session)
    other = next(split for split in SPLITS if split != session.split())
    with pytest.raises(ValueError, match=f"no session of split '{other}'"):
        ReconstructionStream([gray_session], StagePriors(), StreamConfig(split=other))


class Recorder:
    """A stateless 'reconstructor' that keeps the pixels it was given."""

    name, stateful = "recorder", False

    def __init__(self):
        self.seen = []

    def reset(self):
        pass

    def reconstruct(self, pixels, state, state_mask):
        self.seen.append(pixels)
        return np.zeros((FRAME_HEIGHT, FRAME_WIDTH, pixels.shape[1] - 2), np.float32)


def test_evaluation_samples_each_session_with_its_published_seed(gray_session, recorded):
    """Published figures were sampled with ``session_seed(key, id, seed, budget)``: keep it so they reproduce."""
    recorder = Recorder()
    rows = evaluate_sessions([gray_session], {"recorder": recorder}, budget=300, color="gray", max_steps=3,
                             seed=5, with_ssim=False, progress=False)
    assert [row["step"] for row in rows] == [0, 1, 2]
    rng = np.random.default_rng(session_seed("smb1-1-1", "gray-0", 5, 300))
    for step, pixels in enumerate(recorder.seen):
        np.testing.assert_array_equal(pixels, extract_pixels(recorded[1][step], make_pattern("random", 300, rng),
                                                             "gray"))


# --- the SPT's checks on one frame ----------------------------------------------------------------------


def _with(array, index, value):
    changed = np.array(array, dtype=np.float64, copy=True)
    changed[index] = value
    return changed


def _field(name):
    return STATE_INDEX[name]


BAD_FRAMES = {
    "pixels not 2-D": (lambda p, s, m: (p[:, 0], s, m), r"shape \(N, 3\)"),
    "rgb pixels into a gray SPT": (lambda p, s, m: (np.concatenate([p, p[:, 2:], p[:, 2:]], 1), s, m), "color='gray'"),
    "bool pixels": (lambda p, s, m: (p > 0.5, s, m), "real numbers"),
    "complex pixels": (lambda p, s, m: (p.astype(complex), s, m), "real numbers"),
    "string pixels": (lambda p, s, m: (p.astype(str), s, m), "real numbers"),
    "a NaN value": (lambda p, s, m: (_with(p, (0, 2), np.nan), s, m), "NaN"),
    "an infinite coordinate": (lambda p, s, m: (_with(p, (0, 0), np.inf), s, m), "infinite"),
    "a value above 1": (lambda p, s, m: (_with(p, (3, 2), 300.0), s, m), r"values must lie in \[0, 1\]"),
    "a negative coordinate": (lambda p, s, m: (_with(p, (3, 1), -0.1), s, m), "coordinates"),
    "a coordinate above 1": (lambda p, s, m: (_with(p, (3, 0), 1.5), s, m), "coordinates"),
    "more pixels than a frame": (lambda p, s, m: (np.tile(p, (200, 1)), s, m), "at most the 61440"),
    "no pixels": (lambda p, s, m: (p[:0], s, m), "at least 1"),
    "a 2-D state": (lambda p, s, m: (p, s[None], m[None]), "1-D"),
    "a short state": (lambda p, s, m: (p, s[:10], m[:10]), "length 64"),
    "mask of another length": (lambda p, s, m: (p, s, m[:-1]), "length 64"),
    "a NaN in the state": (lambda p, s, m: (p, _with(s, _field("coins"), np.nan), m), "finite"),
    "a mask of 0.5": (lambda p, s, m: (p, s, _with(m, 0, 0.5), ), "only 0"),
    "camera_x of 10**6 pixels": (lambda p, s, m: (p, _with(s, _field("camera_x"), 1e6 / 4096), m), "camera_x"),
    "camera_x out of range though masked": (
        lambda p, s, m: (p, _with(s, _field("camera_x"), 1e6 / 4096), _with(m, _field("camera_x"), 0)), "camera_x"),
    "world 300": (lambda p, s, m: (p, _with(s, _field("world"), 300 / 7), m), "world"),
    "a negative screen y": (lambda p, s, m: (p, _with(s, _field("player_screen_y"), -1.0), m), "player_screen_y"),
}


@pytest.fixture(scope="module")
def warm_spt(gray_priors, recorded):
    """A gray SPT that has reconstructed frame 20 of the session."""
    pixels, _, _, states, masks = recorded
    spt = gray_spt(gray_priors)
    spt.reconstruct(pixels[20], states[20], masks[20])
    return spt


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_a_bad_frame_gets_a_value_error_saying_what_is_wrong(case, warm_spt, recorded):
    pixels, _, _, states, masks = recorded
    corrupt, problem = BAD_FRAMES[case]
    with pytest.raises(ValueError, match=problem):
        warm_spt.reconstruct(*corrupt(pixels[21], states[21], masks[21]))


def test_rejected_frames_leave_the_memory_as_it_was(gray_priors, recorded):
    pixels, _, _, states, masks = recorded
    spt, fresh = gray_spt(gray_priors), gray_spt(gray_priors)
    for reconstructor in (spt, fresh):
        reconstructor.reconstruct(pixels[20], states[20], masks[20])
    for corrupt, _ in BAD_FRAMES.values():
        with pytest.raises(ValueError):
            spt.reconstruct(*corrupt(pixels[21], states[21], masks[21]))
    assert list(spt.memory._levels) == ["1-1-0-ground"] and len(spt.memory._recent) == 1
    np.testing.assert_array_equal(spt.reconstruct(pixels[22], states[22], masks[22]),
                                  fresh.reconstruct(pixels[22], states[22], masks[22]))


def test_masked_enemy_fields_may_hold_the_sentinel(recorded):
    pixels, _, _, states, masks = recorded
    inactive = masks[0][:len(STATE_FIELDS)] == 0
    assert inactive.any() and (states[0][:len(STATE_FIELDS)][inactive] == -999).all()
    assert gray_spt().reconstruct(pixels[0], states[0], masks[0]).shape == (FRAME_HEIGHT, FRAME_WIDTH, 1)


# --- the memory's bounds --------------------------------------------------------------------------------


def test_the_memory_keeps_at_most_max_levels_canvases_forgetting_the_least_recent(recorded):
    pixels, _, _, states, masks = recorded
    rows, cols = uv_to_pixel(pixels[30][:, :2])
    memory = MemoryBank(1, config=MemoryConfig(use_prior=False, max_levels=2))
    for world in range(4):
        state = _with(states[30], _field("world"), world / 7).astype(np.float32)
        memory.update(rows, cols, pixels[30][:, 2:], state, masks[30])
    assert list(memory._levels) == ["3-1-0-ground", "4-1-0-ground"]
    world_1 = _with(states[30], _field("world"), 0).astype(np.float32)
    assert memory.view(world_1)[1].max() == 0, "a forgotten area starts again from nothing"
    assert list(memory._levels) == ["4-1-0-ground", "1-1-0-ground"]
    with pytest.raises(ValueError, match="max_levels"):
        MemoryConfig(max_levels=0)


def test_a_camera_jump_costs_the_pages_it_shows_not_the_distance(recorded):
    _, _, _, states, _ = recorded
    camera = _field("camera_x")
    memory = MemoryBank(3, config=MemoryConfig(use_prior=False))
    widest = _with(states[0], camera, (MAX_LEVEL_WIDTH - FRAME_WIDTH - 100) / 4096).astype(np.float32)
    memory.view(states[0])
    memory.view(widest)
    page_bytes = sum(value.nbytes + confidence.nbytes for value, confidence in memory._pages.values())
    assert len(memory._pages) <= 4 and page_bytes < 4 * 1024 ** 2  # a whole-width canvas would be ~220 MB
    with pytest.raises(ValueError, match="beyond the camera_x field's range"):
        memory.view(_with(states[0], camera, 1e6 / 4096).astype(np.float32))


def test_pages_beyond_max_pages_are_forgotten_least_recent_first(recorded):
    pixels, _, _, states, masks = recorded
    camera = _field("camera_x")
    memory = MemoryBank(1, config=MemoryConfig(use_prior=False, max_pages=4))
    rows, cols = uv_to_pixel(pixels[30][:, :2])
    for page in range(6):  # the camera visits six pages of one level, each sampled once
        state = _with(states[30], camera, page * PAGE_WIDTH / 4096).astype(np.float32)
        memory.update(rows, cols, pixels[30][:, 2:], state, masks[30])
    assert len(memory._pages) == 4
    first = _with(states[30], camera, 0.0).astype(np.float32)
    last = _with(states[30], camera, 5 * PAGE_WIDTH / 4096).astype(np.float32)
    assert memory.view(last)[1][HUD_ROWS:].max() == 1.0, "the newest page is remembered"
    assert memory.view(first)[1][HUD_ROWS:].max() == 0.0, "the oldest page was forgotten"
    with pytest.raises(ValueError, match="max_pages"):
        MemoryConfig(max_pages=1)


# --- checkpoints are checked before the model is built -------------------------------------------------


@pytest.fixture(scope="module")
def good_payload(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "tiny.pt"
    save_checkpoint(path, SparsePixelTransformer(spt_config("tiny")), StagePriors(), MemoryConfig())
    return torch.load(path, weights_only=True)


def _wider_weights():
    return SparsePixelTransformer(spt_config("tiny", dim=64)).state_dict()


def _prior_past_its_palette():
    body = (FRAME_HEIGHT - HUD_ROWS, 300)
    return {"1-1-0-ground": {"index": torch.full(body, 9, dtype=torch.uint8), "palette": torch.zeros((4, 3), dtype=torch.uint8),
                      "confidence": torch.zeros(body, dtype=torch.uint8),
                      "hud_index": torch.zeros((HUD_ROWS, FRAME_WIDTH), dtype=torch.uint8),
                      "hud_confidence": torch.zeros((HUD_ROWS, FRAME_WIDTH), dtype=torch.uint8)}}


BAD_CHECKPOINTS = {
    "dim 4096": (lambda p: p["config"].update(dim=4096), r"dim must be an int in \[8, 256\]"),
    "an unknown config field": (lambda p: p["config"].update(depth=3), "unknown SPTConfig fields"),
    "heads as a float": (lambda p: p["config"].update(heads=2.0), "heads must be an int"),
    "a bool for a size": (lambda p: p["config"].update(encoder_layers=True), "encoder_layers must be an int"),
    "state_dim below the named fields": (lambda p: p["config"].update(state_dim=8), "state_dim"),
    "a frame of another size": (lambda p: p["config"].update(height=480), "height"),
    "dropout of 2": (lambda p: p["config"].update(dropout=2.0), "dropout"),
    "a string for a flag": (lambda p: p["config"].update(global_skip="no"), "global_skip must be True or False"),
    "config not a dict": (lambda p: p.update(config=[1, 2]), "must be a dict"),
    "weights of another size": (lambda p: p.update(state_dict=_wider_weights()), "needs a float tensor of shape"),
    "a missing weight": (lambda p: p["state_dict"].pop("to_pixels.bias"), "missing"),
    "an extra weight": (lambda p: p["state_dict"].update(extra=torch.zeros(3)), "unexpected"),
    "an unknown memory field": (lambda p: p["memory"].update(cords=1), "unknown MemoryConfig fields"),
    "an ema of 5": (lambda p: p["memory"].update(ema=5.0), "ema must be a number"),
    "a prior past its palette": (lambda p: p.update(priors=_prior_past_its_palette()), "past its 4-colour palette"),
    "a version string": (lambda p: p.update(version="1"), "version"),
    "no state_dict": (lambda p: p.pop("state_dict"), "lacks the checkpoint entries"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_a_bad_checkpoint_fails_fast_with_a_clear_error(case, good_payload, tmp_path, monkeypatch):
    """Refused before any model is allocated (building one with dim=4096 took 13 s); shapes are checked on
    the meta device, which allocates nothing."""
    import models.spt

    allocated = []

    class Spy(models.spt.SparsePixelTransformer):
        def __init__(self, config):
            super().__init__(config)
            allocated.extend(p.device.type for p in self.parameters() if p.device.type != "meta")

    monkeypatch.setattr(models.spt, "SparsePixelTransformer", Spy)
    corrupt, problem = BAD_CHECKPOINTS[case]
    payload = {key: dict(value) if isinstance(value, dict) else value for key, value in good_payload.items()}
    corrupt(payload)
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=problem):
        load_checkpoint(path)
    assert not allocated, "a model was allocated before the checkpoint was refused"
    torch.save(good_payload, path)
    load_checkpoint(path)
    assert allocated, "the spy sees the model a good checkpoint builds"


def test_a_good_checkpoint_still_loads(good_payload, tmp_path):
    torch.save(good_payload, tmp_path / "good.pt")
    model, priors, memory_config, _ = load_checkpoint(tmp_path / "good.pt")
    assert model.config.dim == 32 and memory_config == MemoryConfig() and len(priors) == 0
