"""The non-learned reconstructors on real emulator frames: the interface, exact samples, quality, memory."""
import numpy as np
import pytest

import sgaps_env
from agents import HeuristicPlayer
from models.baselines import (BASELINES, InpaintReconstructor, Reconstructor, make_baseline,
                              nearest_reconstruction)
from models.memory import SPRITE_MARGIN
from models.metrics import psnr
from sgaps_env.coords import (FRAME_HEIGHT, FRAME_WIDTH, extract_pixels, frame_values, make_pattern, pixel_to_uv,
                              uv_to_pixel)
from sgaps_env.sprites import HUD_ROWS, box_mask, camera_x, sprite_boxes

SAMPLES = 500
STEPS = 100


@pytest.fixture(scope="module")
def run():
    """``STEPS`` steps of 1-1 played by the RAM-aware runner, each frame sampled at a fresh random
    500-pixel pattern: a list of ``(coords (N, 2), frame (H, W, 3) uint8, state, state_mask)``."""
    env = sgaps_env.SGAPSSuperMarioBrosEnv(stage="1-1", sample_count=SAMPLES, color="rgb", return_frame=True)
    player, coords_rng = HeuristicPlayer(seed=0), np.random.default_rng(0)
    observation, info = env.reset(seed=0)
    steps = []
    try:
        for _ in range(STEPS):
            coords = make_pattern("random", SAMPLES, coords_rng)
            observation, _, terminated, _, info = env.step({"buttons": player.act(observation, info),
                                                            "coords": coords})
            # the environment's own pixels are what extract_pixels reads (tests/test_env.py checks it)
            np.testing.assert_array_equal(observation["pixels"], extract_pixels(info["frame"], coords, "rgb"))
            steps.append((coords, info["frame"], observation["state"], observation["state_mask"]))
            if terminated:
                break
    finally:
        env.close()
    return steps


def samples(step, color):
    """``(pixels (N, 2 + C), truth (H, W, C))`` of one recorded step in a colour mode."""
    coords, frame, _, _ = step
    return extract_pixels(frame, coords, color), frame_values(frame, color)


def play(reconstructor, steps, color):
    """Reconstructions of ``steps`` in order (after a reset), with their truths."""
    reconstructor.reset()
    outputs, truths = [], []
    for step in steps:
        pixels, truth = samples(step, color)
        outputs.append(reconstructor.reconstruct(pixels, step[2], step[3]))
        truths.append(truth)
    return outputs, truths


def mean_psnr(outputs, truths):
    return float(np.mean([psnr(o, t) for o, t in zip(outputs, truths)]))


# --- the interface --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_is_a_reconstructor_named_by_its_key(name):
    reconstructor = make_baseline(name)
    assert isinstance(reconstructor, Reconstructor)
    assert reconstructor.name == name


@pytest.mark.parametrize("color, channels", [("gray", 1), ("rgb", 3)])
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_output_is_a_frame_in_range_that_keeps_every_sample_exactly(run, name, color, channels):
    outputs, _ = play(make_baseline(name), run[:3], color)
    for output, step in zip(outputs, run[:3]):
        assert output.shape == (FRAME_HEIGHT, FRAME_WIDTH, channels) and output.dtype == np.float32
        assert np.isfinite(output).all() and output.min() >= 0.0 and output.max() <= 1.0
        pixels, _ = samples(step, color)
        rows, cols = uv_to_pixel(pixels[:, :2])
        np.testing.assert_array_equal(output[rows, cols], pixels[:, 2:])


@pytest.mark.parametrize("rows, cols", [([10], [20]), ([10, 200], [20, 100]), ([5, 50, 100, 150], [7, 7, 7, 7]),
                                        ([5, 5, 100, 200], [7, 7, 30, 250])],
                         ids=["one sample", "two samples", "on one line", "one pixel twice"])
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_a_few_samples_still_give_a_whole_frame(run, name, rows, cols):
    values = np.linspace(0.1, 0.9, len(rows), dtype=np.float32)[:, None]
    pixels = np.concatenate([pixel_to_uv(np.array(rows), np.array(cols)), values], axis=1)
    output = make_baseline(name).reconstruct(pixels, run[0][2], run[0][3])
    assert output.shape == (FRAME_HEIGHT, FRAME_WIDTH, 1) and np.isfinite(output).all()
    assert output[rows[-1], cols[-1], 0] == values[-1, 0]  # a pixel sampled twice keeps its last sample


@pytest.mark.parametrize("bad, problem", [(np.zeros((10, 4), np.float32), r"\(N, 3\)"),
                                          (np.zeros((0, 3), np.float32), "N >= 1"),
                                          (np.zeros((10,), np.float32), "pixels has shape")])
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_malformed_pixels_raise_a_value_error(run, name, bad, problem):
    with pytest.raises(ValueError, match=problem):
        make_baseline(name).reconstruct(bad, run[0][2], run[0][3])


# --- quality on real frames -----------------------------------------------------------------------------


@pytest.mark.parametrize("color", ["gray", "rgb"])
def test_linear_interpolation_beats_nearest(run, color):
    steps = run[::10]
    linear = mean_psnr(*play(make_baseline("linear"), steps, color))
    nearest = mean_psnr(*play(make_baseline("nearest"), steps, color))
    assert linear > nearest + 0.5, f"linear {linear:.2f} dB, nearest {nearest:.2f} dB"


def test_every_single_frame_rebuild_beats_a_flat_frame_in_rgb(run):
    """In RGB each rebuild beats a frame filled with the samples' mean colour. (In luma it does not:
    a flat frame of the mean luma scores about 17 dB on 1-1, above nearest's 15 and linear's 16.)"""
    steps = run[::10]
    flat = np.mean([psnr(np.broadcast_to(pixels[:, 2:].mean(axis=0), truth.shape), truth)
                    for pixels, truth in (samples(step, "rgb") for step in steps)])
    for name in ("nearest", "linear", "telea", "ns"):
        score = mean_psnr(*play(make_baseline(name), steps, "rgb"))
        assert score > flat + 1.0, f"{name}: {score:.2f} dB vs {flat:.2f} dB for the mean colour of the samples"


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_inpainting_fills_every_pixel(run, method):
    rng = np.random.default_rng(3)
    colour = np.array([0.2, 0.6, 1.0], np.float32)  # exact in 8 bits (51, 153, 255)
    uv = make_pattern("random", SAMPLES, rng)
    rgb = np.concatenate([uv, np.broadcast_to(colour, (SAMPLES, 3))], axis=1)
    gray = np.concatenate([uv, np.full((SAMPLES, 1), colour[1])], axis=1)
    # OpenCV's Telea drifts by a few 8-bit levels over such sparse samples; Navier-Stokes stays exact
    tolerance = {"telea": 10 / 255, "ns": 1e-6}[method]
    for pixels, value in ((rgb, colour), (gray, colour[1:2])):
        output = InpaintReconstructor(method).reconstruct(pixels, run[0][2], run[0][3])
        np.testing.assert_allclose(output, np.broadcast_to(value, output.shape), atol=tolerance)
    # on a real frame, nothing is left at the zero the unknown pixels start from
    pixels, truth = samples(run[50], "rgb")
    sparse = np.zeros_like(truth)
    rows, cols = uv_to_pixel(pixels[:, :2])
    sparse[rows, cols] = pixels[:, 2:]
    output = make_baseline(method).reconstruct(pixels, run[50][2], run[50][3])
    assert psnr(output, truth) > psnr(sparse, truth) + 5.0


# --- memory ---------------------------------------------------------------------------------------------


def test_hold_beats_nearest_in_the_later_half_of_a_scrolling_run(run):
    assert len(run) >= 80, "the runner should survive most of the run"
    assert camera_x(run[-1][2]) - camera_x(run[0][2]) > FRAME_WIDTH, "the camera should scroll over a screen"
    later = len(run) // 2
    hold, truths = play(make_baseline("hold"), run, "gray")
    nearest, _ = play(make_baseline("nearest"), run, "gray")
    hold_db, nearest_db = mean_psnr(hold[later:], truths[later:]), mean_psnr(nearest[later:], truths[later:])
    assert hold_db > nearest_db + 0.3, f"hold {hold_db:.2f} dB, nearest {nearest_db:.2f} dB"


def test_hold_moves_what_it_saw_with_the_camera(run):
    """A background sample of one frame is held, exactly, at its scrolled place in the next frame."""
    hold = make_baseline("hold")
    hold.reset()
    checked = 0
    for before, after in zip(run[40:50], run[41:51]):
        first, _ = samples(before, "rgb")
        hold.reconstruct(first, before[2], before[3])
        second, _ = samples(after, "rgb")
        output = hold.reconstruct(second, after[2], after[3])
        rows, cols = uv_to_pixel(first[:, :2])
        shifted = cols + camera_x(before[2]) - camera_x(after[2])
        sprites = box_mask(sprite_boxes(before[2], before[3]), margin=SPRITE_MARGIN)  # never enter the memory
        resampled = np.zeros((FRAME_HEIGHT, FRAME_WIDTH), bool)
        resampled[uv_to_pixel(second[:, :2])] = True
        keep = (rows >= HUD_ROWS) & (shifted >= 0) & (shifted < FRAME_WIDTH)
        keep[keep] &= ~sprites[rows[keep], cols[keep]] & ~resampled[rows[keep], shifted[keep]]
        np.testing.assert_array_equal(output[rows[keep], shifted[keep]], first[keep, 2:])
        checked += int(keep.sum())
        hold.reset()
    assert checked > 3000
    assert camera_x(run[50][2]) > camera_x(run[40][2]), "these frames should scroll"


def test_hold_reset_forgets_the_session(run):
    hold = make_baseline("hold")
    play(hold, run[:30], "gray")
    pixels, _ = samples(run[30], "gray")
    state, mask = run[30][2], run[30][3]
    fresh = nearest_reconstruction(pixels)
    assert not np.array_equal(hold.reconstruct(pixels, state, mask), fresh), "the memory should have been used"
    with pytest.raises(ValueError, match="reset"):
        hold.reconstruct(samples(run[31], "rgb")[0], run[31][2], run[31][3])
    hold.reset()
    np.testing.assert_array_equal(hold.reconstruct(pixels, state, mask), fresh)
    hold.reset()  # a new session may change colour mode
    assert hold.reconstruct(samples(run[31], "rgb")[0], run[31][2], run[31][3]).shape[2] == 3


def test_previous_keeps_old_values_where_no_new_sample_fell(run):
    previous = make_baseline("previous")
    (first, second), _ = play(previous, run[:2], "rgb")
    pixels, _ = samples(run[0], "rgb")
    np.testing.assert_array_equal(first, nearest_reconstruction(pixels))
    pixels, _ = samples(run[1], "rgb")
    fresh = np.zeros((FRAME_HEIGHT, FRAME_WIDTH), bool)
    fresh[uv_to_pixel(pixels[:, :2])] = True
    np.testing.assert_array_equal(second[~fresh], first[~fresh])
    assert not np.array_equal(second[fresh], first[fresh])
    kept = second.copy()
    second[:] = 0.0  # an output is the caller's to change: the next frame still builds on what was returned
    third = previous.reconstruct(samples(run[2], "rgb")[0], run[2][2], run[2][3])
    assert (np.abs(third - kept) < 1e-6).mean() > 0.99
    previous.reset()
    np.testing.assert_array_equal(previous.reconstruct(pixels, run[1][2], run[1][3]), nearest_reconstruction(pixels))


# --- by name --------------------------------------------------------------------------------------------


def test_make_baseline_passes_options_and_names_the_choices():
    telea = make_baseline("telea", radius=5)
    assert isinstance(telea, InpaintReconstructor) and (telea.method, telea.radius) == ("telea", 5)
    assert make_baseline("ns").method == "ns"
    with pytest.raises(ValueError, match="unknown baseline 'cubic'.*'hold'.*'linear'.*'nearest'"):
        make_baseline("cubic")
    with pytest.raises(ValueError, match="method='telea'"):
        make_baseline("telea", method="ns")
    with pytest.raises(ValueError, match="expected one of \\['ns', 'telea'\\]"):
        InpaintReconstructor(method="biharmonic")
    with pytest.raises(ValueError, match="radius"):
        InpaintReconstructor(radius=0)
