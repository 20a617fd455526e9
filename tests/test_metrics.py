"""Frame metrics on real emulator frames: PSNR, SSIM and the PSNR inside the RAM-given sprite boxes."""
import math

import numpy as np
import pytest

import sgaps_env
from agents import HeuristicPlayer
from models.metrics import METRIC_NAMES, PSNR_CAP_DB, foreground_psnr, frame_metrics, psnr, ssim
from sgaps_env.coords import frame_values, make_pattern
from sgaps_env.sprites import box_mask, sprite_boxes


@pytest.fixture(scope="module")
def frames():
    """40 steps of 1-1: a list of ``(frame (H, W, 3) uint8, state, state_mask)``."""
    env = sgaps_env.SGAPSSuperMarioBrosEnv(stage="1-1", sample_count=16, return_frame=True)
    player = HeuristicPlayer(seed=0)
    observation, info = env.reset(seed=0)
    steps = []
    try:
        for _ in range(40):
            action = {"buttons": player.act(observation, info), "coords": make_pattern("uniform_grid", 16)}
            observation, _, terminated, _, info = env.step(action)
            assert not terminated
            steps.append((info["frame"], observation["state"], observation["state_mask"]))
    finally:
        env.close()
    return steps


def with_enemy(frames):
    """The last step whose state has an enemy box besides the player's."""
    found = [step for step in frames if any(box.kind == "enemy" for box in sprite_boxes(step[1], step[2]))]
    assert found, "a goomba should be on screen within 40 steps of 1-1"
    return found[-1]


def noisy(frame, sigma, seed=0):
    return np.clip(frame + np.random.default_rng(seed).normal(0.0, sigma, frame.shape), 0.0, 1.0).astype(np.float32)


# --- PSNR and SSIM --------------------------------------------------------------------------------------


@pytest.mark.parametrize("color", ["gray", "rgb"])
def test_ssim_is_one_for_identical_frames_and_drops_with_noise(frames, color):
    truth = frame_values(frames[-1][0], color)
    assert ssim(truth, truth.copy()) == pytest.approx(1.0)
    assert psnr(truth, truth.copy()) == PSNR_CAP_DB
    slightly, badly = ssim(noisy(truth, 0.02), truth), ssim(noisy(truth, 0.2), truth)
    assert 0.0 < badly < slightly < 0.99
    other = frame_values(frames[0][0], color)
    assert ssim(other, truth) < 1.0


def test_ssim_sees_structure_that_psnr_misses(frames):
    """A constant brightness offset costs PSNR but keeps structure; noise of the same MSE destroys it."""
    truth = frame_values(frames[-1][0], "gray")
    dark = truth * 0.9
    shifted = np.clip(truth + 0.05, 0.0, 1.0)
    rng = np.random.default_rng(1)
    sign_noise = np.clip(truth + 0.05 * rng.choice([-1.0, 1.0], truth.shape), 0.0, 1.0)
    assert abs(psnr(shifted, truth) - psnr(sign_noise, truth)) < 1.0
    assert ssim(shifted, truth) > ssim(sign_noise, truth) + 0.2
    assert ssim(dark, truth) > 0.9


@pytest.mark.parametrize("metric", [ssim, psnr])
def test_metrics_reject_frames_of_different_shapes(metric):
    with pytest.raises(ValueError, match="one shape"):
        metric(np.zeros((240, 256, 1)), np.zeros((240, 256, 3)))


def test_ssim_asks_for_a_channel_axis():
    with pytest.raises(ValueError, match=r"frame\[\.\.\., None\]"):
        ssim(np.zeros((240, 256)), np.zeros((240, 256)))


# --- PSNR inside the sprite boxes -----------------------------------------------------------------------


@pytest.mark.parametrize("color", ["gray", "rgb"])
def test_foreground_psnr_measures_only_inside_the_sprite_boxes(frames, color):
    frame, state, mask = with_enemy(frames)
    truth = frame_values(frame, color)
    inside = box_mask(sprite_boxes(state, mask))
    assert 0 < inside.mean() < 0.1
    prediction = noisy(truth, 0.1)
    score = foreground_psnr(prediction, truth, state, mask)
    assert 15.0 < score < 30.0  # noise of sigma 0.1 (clipped): about 20 dB wherever it is measured
    corrupted = prediction.copy()
    corrupted[~inside] = 1.0 - truth[~inside]  # ruin everything outside the boxes
    assert foreground_psnr(corrupted, truth, state, mask) == score
    assert psnr(corrupted, truth) < psnr(prediction, truth) - 5.0
    repaired = prediction.copy()
    repaired[inside] = truth[inside]  # fix everything inside the boxes
    assert foreground_psnr(repaired, truth, state, mask) == PSNR_CAP_DB


def test_foreground_margin_grows_the_boxes(frames):
    frame, state, mask = with_enemy(frames)
    truth = frame_values(frame, "rgb")
    ring = box_mask(sprite_boxes(state, mask), margin=3) & ~box_mask(sprite_boxes(state, mask))
    prediction = truth.copy()
    prediction[ring] = 1.0 - truth[ring]
    assert foreground_psnr(prediction, truth, state, mask) == PSNR_CAP_DB
    assert foreground_psnr(prediction, truth, state, mask, margin=3) < 30.0
    with pytest.raises(ValueError, match="margin"):
        foreground_psnr(prediction, truth, state, mask, margin=-1)


def test_foreground_psnr_is_nan_without_a_sprite_on_screen(frames):
    frame, state, mask = frames[-1]
    truth = frame_values(frame, "gray")
    no_sprites = np.zeros_like(mask)  # nothing valid in the state: no player, no active enemy
    assert sprite_boxes(state, no_sprites) == []
    assert math.isnan(foreground_psnr(truth * 0.5, truth, state, no_sprites))
    values = frame_metrics(truth * 0.5, truth, state, no_sprites)
    assert math.isnan(values["foreground_psnr"]) and math.isfinite(values["psnr"])


def test_frame_metrics_scores_a_perfect_frame_at_the_top_and_a_worse_frame_lower(frames):
    frame, state, mask = with_enemy(frames)
    truth = frame_values(frame, "rgb")
    perfect = frame_metrics(truth.copy(), truth, state, mask)
    assert tuple(perfect) == METRIC_NAMES
    assert perfect == {"psnr": PSNR_CAP_DB, "ssim": pytest.approx(1.0), "foreground_psnr": PSNR_CAP_DB}
    inside = box_mask(sprite_boxes(state, mask))
    sprites_wrong = truth.copy()
    sprites_wrong[inside] = 1.0 - truth[inside]
    worse = frame_metrics(sprites_wrong, truth, state, mask)
    # a small wrong area costs the whole-frame scores a little and the foreground score everything
    assert worse["foreground_psnr"] < 10.0 < worse["psnr"] < PSNR_CAP_DB and worse["ssim"] < 1.0
    assert worse["foreground_psnr"] < worse["psnr"] - 10.0
