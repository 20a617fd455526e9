"""The temporal memory, the stage priors, the SPT model and checkpoints, training, evaluation and the scorer."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import tyro

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agents import collect  # noqa: E402
from agents.players import make_player  # noqa: E402
from models.baselines import make_baseline  # noqa: E402
from models.evaluation import evaluate_sessions, summarize  # noqa: E402
from models.memory import MemoryBank, MemoryConfig, StagePriors  # noqa: E402
from models.metrics import psnr  # noqa: E402
from models.scoring import SPTScorer  # noqa: E402
from models.spt import (DEFAULT_CHECKPOINT, SPTReconstructor, SparsePixelTransformer, collate_inputs,  # noqa: E402
                        frame_inputs, load_checkpoint, read_checkpoint, save_checkpoint, spt_config)
from models.stream import ReconstructionStream, StreamConfig  # noqa: E402
from sgaps_env.coords import frame_values, make_pattern, uv_to_pixel  # noqa: E402
from sgaps_env.sprites import HUD_ROWS, box_mask, camera_x, sprite_boxes  # noqa: E402
from sgaps_env.session_file import FramePalette  # noqa: E402


def play(make_env, steps, stage="1-1", color="rgb", seed=0, count=500):
    """``[(frame uint8, pixels, state, mask)]`` of heuristic play with random patterns."""
    env = make_env(stage=stage, color=color, return_frame=True, sample_count=count)
    player = make_player("heuristic")
    rng = np.random.default_rng(seed)
    observation, info = env.reset(seed=seed)
    player.reset(seed)
    out = []
    for _ in range(steps):
        coords = make_pattern("random", count, rng)
        observation, _, terminated, truncated, info = env.step({"buttons": player.act(observation, info),
                                                                "coords": coords})
        out.append((info["frame"].copy(), observation["pixels"].copy(), observation["state"].copy(),
                    observation["state_mask"].copy()))
        if terminated or truncated:
            break
    return out


@pytest.fixture(scope="module")
def run_1_1():
    import sgaps_env

    created = []

    def make_env(**kwargs):
        env = sgaps_env.SGAPSSuperMarioBrosEnv(**kwargs)
        created.append(env)
        return env

    steps = play(make_env, 160)
    for env in created:
        env.close()
    return steps


# --- memory ------------------------------------------------------------------------------------------


def test_memory_keeps_samples_where_they_live_in_the_level(run_1_1):
    memory = MemoryBank(3, config=MemoryConfig(use_prior=False))
    scrolled = [(a, b) for a, b in zip(run_1_1, run_1_1[1:]) if camera_x(b[2]) > camera_x(a[2])]
    assert scrolled, "the heuristic player should scroll the screen"
    (frame, pixels, state, mask), (_, _, next_state, _) = scrolled[0]
    rows, cols = uv_to_pixel(pixels[:, :2], 240, 256)
    memory.update(rows, cols, pixels[:, 2:], state, mask)
    canvas, confidence = memory.view(next_state)
    shift = camera_x(next_state) - camera_x(state)
    sprites = box_mask(sprite_boxes(state, mask), margin=2)
    body = (rows >= HUD_ROWS) & (cols - shift >= 0) & ~sprites[rows, cols]
    # a body sample moved left by the scroll; the status bar stays where it was
    np.testing.assert_allclose(canvas[rows[body], cols[body] - shift], pixels[body, 2:])
    assert (confidence[rows[body], cols[body] - shift] == 1).all()
    hud = (rows < HUD_ROWS) & ~sprites[rows, cols]
    np.testing.assert_allclose(canvas[rows[hud], cols[hud]], pixels[hud, 2:])
    # samples inside the sprite boxes never enter the static memory
    inside = sprites[rows, cols] & (rows >= HUD_ROWS)
    if inside.any():
        assert (memory.view(state)[1][rows[inside], cols[inside]] == 0).all()
    memory.reset()
    assert memory.view(next_state)[1].max() == 0


def test_dynamic_memory_holds_recent_samples_with_age(run_1_1):
    memory = MemoryBank(3, config=MemoryConfig(use_prior=False, dynamic_frames=2))
    (_, pixels, state, mask) = run_1_1[10]
    rows, cols = uv_to_pixel(pixels[:, :2], 240, 256)
    memory.update(rows, cols, pixels[:, 2:], state, mask)
    values, freshness = memory.dynamic(state)
    np.testing.assert_allclose(values[rows, cols], pixels[:, 2:])
    assert set(np.unique(freshness)) == {0.0, 1.0}
    memory.update(rows[:0], cols[:0], pixels[:0, 2:], state, mask)
    assert set(np.unique(memory.dynamic(state)[1])) == {0.0, 0.5}


def as_session_file_encoding(frames):
    """``(palette indices (T, H, W) uint8, palette (P, 3) uint8)`` as the session file stores frames."""
    palette = FramePalette()
    return np.stack([palette.encode(frame) for frame in frames]), palette.array()


def test_stage_prior_recalls_the_level_background(run_1_1):
    frames = np.stack([step[0] for step in run_1_1])
    states = np.stack([step[2] for step in run_1_1])
    masks = np.stack([step[3] for step in run_1_1])
    index, palette = as_session_file_encoding(frames[:120])
    priors = StagePriors.build([(index, palette, states[:120], masks[:120])], progress=False)
    assert list(priors.levels) == ["1-1-0-ground"]
    restored = StagePriors.from_tensors(priors.to_tensors())
    np.testing.assert_array_equal(restored.levels["1-1-0-ground"].rgb(), priors.levels["1-1-0-ground"].rgb())
    with_prior, without = MemoryBank(3, restored), MemoryBank(3, config=MemoryConfig(use_prior=False))
    for t in range(120, 125):  # frames the prior was not built from, at cameras it saw
        truth = frame_values(frames[t], "rgb")
        background = ~box_mask(sprite_boxes(states[t], masks[t]), margin=2)
        background[:HUD_ROWS] = False
        canvas, confidence = with_prior.view(states[t])
        seen = background & (confidence > 0)  # the camera moves on: the right edge may be new
        assert seen.mean() > 0.6
        assert psnr(canvas[seen], truth[seen]) > 25  # shifted one pixel, the same map scores about 15 dB
        assert without.view(states[t])[1].max() == 0


def test_stage_prior_draws_the_blinking_blocks_and_the_digits_the_state_gives(run_1_1):
    frames = np.stack([step[0] for step in run_1_1])
    states = np.stack([step[2] for step in run_1_1])
    masks = np.stack([step[3] for step in run_1_1])
    index, palette = as_session_file_encoding(frames)
    prior = StagePriors.build([(index[:120], palette, states[:120], masks[:120])],
                              progress=False).levels["1-1-0-ground"]
    assert len(prior.rotation_rows) > 0  # ?-blocks and the status bar's coin
    assert 2 in set(prior.digit_slot.tolist())  # the timer's ones digit changes every few steps
    errors = {}
    for draw in (True, False):
        memory = MemoryBank(3, StagePriors({"1-1-0-ground": prior}))
        if not draw:
            memory._rotate = memory._draw_digits = lambda *args: None
        errors[draw] = np.mean([((memory.view(states[t])[0] - frame_values(frames[t], "rgb")) ** 2)[:HUD_ROWS].mean()
                                for t in range(120, 160)])
    assert errors[True] < 0.5 * errors[False]


# --- the model ---------------------------------------------------------------------------------------


def inputs_of(steps, memory):
    items = []
    for frame, pixels, state, mask in steps:
        rows, cols = uv_to_pixel(pixels[:, :2], 240, 256)
        items.append(frame_inputs(memory, rows, cols, pixels[:, 2:], state, mask))
        memory.update(rows, cols, pixels[:, 2:], state, mask)
    return items


@pytest.mark.parametrize("channels", [1, 3])
def test_untrained_spt_returns_the_composited_canvas(run_1_1, channels):
    torch.manual_seed(0)
    model = SparsePixelTransformer(spt_config("tiny", channels=channels)).eval()
    steps = run_1_1[20:22]
    if channels == 1:  # the same pixels' luma, read from the true frame
        steps = [(f, np.concatenate([p[:, :2], frame_values(f, "gray")[uv_to_pixel(p[:, :2])]], 1), s, m)
                 for f, p, s, m in steps]
    batch = collate_inputs(inputs_of(steps, MemoryBank(channels, config=MemoryConfig(use_prior=False))))
    with torch.no_grad():
        out = model(batch, need_weights=True)
    assert out["frame"].shape == (2, channels, 240, 256)
    # the correction head starts at zero and the templates start transparent
    torch.testing.assert_close(out["frame"], batch["canvas"], atol=0.02, rtol=0)
    assert out["attention"].shape == (2, 960, 1 + batch["token_xy"].shape[1])
    torch.testing.assert_close(out["attention"].sum(-1), torch.ones(2, 960))


def test_sprite_layer_paints_only_inside_the_object_window(run_1_1):
    model = SparsePixelTransformer(spt_config("tiny"))
    with_player = next(step for step in run_1_1 if any(b.kind == "player" for b in sprite_boxes(step[2], step[3])))
    batch = collate_inputs(inputs_of([with_player], MemoryBank(3, config=MemoryConfig(use_prior=False))))
    pose = int(batch["sprite_pose"][0, 0])
    with torch.no_grad():
        model.sprite_templates[pose, 3] = 8.0   # opaque
        model.sprite_templates[pose, :3] = 8.0  # white
        composite, coverage = model.render_sprites(torch.zeros(1, 3, 240, 256), batch["sprite_pose"],
                                                   batch["sprite_top"], batch["sprite_left"], batch["sprite_valid"])
    top, left = int(batch["sprite_top"][0, 0]), int(batch["sprite_left"][0, 0])
    window = np.zeros((240, 256), bool)
    window[max(0, top):top + 40, max(0, left):left + 24] = True
    painted = coverage[0, 0].numpy() > 0.5
    assert painted.any() and not (painted & ~window).any()
    assert composite[0, :, painted].min() > 0.99


def test_mc_dropout_gives_a_spread(run_1_1):
    torch.manual_seed(0)
    model = SparsePixelTransformer(spt_config("tiny", dropout=0.5))
    torch.nn.init.normal_(model.to_pixels.weight, std=0.1)
    batch = collate_inputs(inputs_of(run_1_1[30:31], MemoryBank(3, config=MemoryConfig(use_prior=False))))
    mean, spread = model.eval().mc_dropout(batch, samples=4)
    assert mean.shape == spread.shape == (1, 3, 240, 256)
    assert spread.mean() > 0 and not model.training
    with pytest.raises(ValueError, match="samples >= 2"):
        model.mc_dropout(batch, samples=1)


def test_checkpoint_round_trip_and_bad_files(tmp_path, run_1_1):
    model = SparsePixelTransformer(spt_config("tiny"))
    with torch.no_grad():
        model.sprite_templates[3, 0, 0, 0] = 1.25
    path = tmp_path / "spt.pt"
    save_checkpoint(path, model, StagePriors(), MemoryConfig(ema=0.5), {"note": "test"})
    payload = torch.load(path, weights_only=True)  # plain containers and tensors only
    assert payload["config"]["dim"] == 32 and payload["memory"]["ema"] == 0.5
    loaded, priors, memory_config, metadata = load_checkpoint(path)
    assert loaded.sprite_templates[3, 0, 0, 0].item() == 1.25 and metadata == {"note": "test"}
    assert memory_config.ema == 0.5 and len(priors) == 0
    with pytest.raises(FileNotFoundError, match="train_reconstructor"):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "sgaps-spt", "version": 99}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="upgrade sgaps"):
        read_checkpoint(tmp_path / "future.pt")


# --- the shipped checkpoint -------------------------------------------------------------------------------


def test_shipped_checkpoint_is_small_self_describing_and_beats_the_baselines(run_1_1):
    assert DEFAULT_CHECKPOINT.is_file(), "the repository ships an SPT checkpoint"
    assert DEFAULT_CHECKPOINT.stat().st_size <= 20 * 1024 * 1024
    payload = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    assert payload["config"]["channels"] == 3 and "command" in payload["metadata"]
    spt, hold = SPTReconstructor(), make_baseline("hold")
    scores = {"spt": [], "hold": []}
    for frame, pixels, state, mask in run_1_1[:40]:
        truth = frame_values(frame, "rgb")
        for name, reconstructor in (("spt", spt), ("hold", hold)):
            output = reconstructor.reconstruct(pixels, state, mask)
            assert output.shape == (240, 256, 3) and output.dtype == np.float32
            scores[name].append(psnr(output, truth))
        rows, cols = uv_to_pixel(pixels[:, :2], 240, 256)
        np.testing.assert_allclose(output[rows, cols], pixels[:, 2:])
    assert np.mean(scores["spt"]) > np.mean(scores["hold"]) + 8
    with pytest.raises(ValueError, match="color='rgb'"):
        spt.reconstruct(pixels[:, :3], state, mask)


def test_the_environment_scores_with_the_spt_it_is_given(make_env):
    env = make_env(color="rgb", reward_mode="reconstruction", return_frame=True, scorer=SPTScorer())
    observation, info = env.reset(seed=0)
    rewards = []
    for _ in range(5):
        observation, reward, *_, info = env.step(env.action_space.sample())
        rewards.append(reward)
    assert np.mean(rewards) > 20 and rewards[-1] == info["reconstruction_score"]
    memory = env.scorer.reconstructor.memory
    assert memory.view(observation["state"])[1].max() > 0
    assert len(memory._recent) == memory.config.dynamic_frames
    before = memory._levels
    env.reset(seed=1)  # the scorer's session memory starts afresh with the episode (then sees the reset frame)
    assert memory._levels is not before and len(memory._recent) == 1


# --- training data, training, evaluation ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sessions(tmp_path_factory):
    output = tmp_path_factory.mktemp("sessions") / "train.h5"
    args = tyro.cli(collect.Args, args=["--output", str(output), "--no-progress", "--max-steps", "40",
                                        "--episodes", "12", "--player", "heuristic", "--color", "rgb"])
    collect.main(args)
    return output


def test_stream_yields_consecutive_pairs_with_one_pixel_count(tiny_sessions):
    stream = ReconstructionStream([tiny_sessions], StagePriors(), StreamConfig(
        budget=(300, 400), pairs_per_batch=3, pairs_per_epoch=6, shuffle_buffer=8, drop_max=0.5))
    batches = list(stream)
    assert len(batches) == 2
    for batch in batches:
        assert batch["target"].shape == (6, 3, 240, 256)
        assert batch["inputs"]["token_xy"].shape[1] == batch["count"] <= 400
        assert bool(batch["inputs"]["token_valid"].all())
        # the model's pixel values are the targets' pixels
        xy, values = batch["inputs"]["token_xy"][0], batch["inputs"]["token_values"][0]
        torch.testing.assert_close(batch["target"][0][:, xy[:, 1], xy[:, 0]].T, values, atol=1 / 255, rtol=0)


def test_training_writes_checkpoints_and_resumes(tiny_sessions, tmp_path):
    from experiments import train_reconstructor

    common = ["--data", str(tiny_sessions), "--output", str(tmp_path / "run"), "--size", "tiny",
              "--pairs-per-epoch", "8", "--batch-pairs", "2", "--val-sessions", "1", "--val-steps", "6",
              "--workers", "0", "--no-progress", "--warmup-steps", "2"]
    first = train_reconstructor.main(tyro.cli(train_reconstructor.Args, args=[*common, "--epochs", "1"]))
    assert len(first["history"]) == 1 and (tmp_path / "run" / "best.pt").is_file()
    resumed = train_reconstructor.main(tyro.cli(train_reconstructor.Args, args=[*common, "--epochs", "2", "--resume"]))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    payload = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert payload["training"]["epoch"] == 1 and payload["metadata"]["size"] == "tiny"
    assert SPTReconstructor(tmp_path / "run" / "last.pt").channels == 3


def test_evaluation_gives_every_reconstructor_the_same_frames(tiny_sessions):
    reconstructors = {"nearest": make_baseline("nearest"), "hold": make_baseline("hold")}
    rows = evaluate_sessions([tiny_sessions], reconstructors, budget=300, max_steps=9, max_sessions=2,
                             score_every=3, progress=False)
    steps = {(r["session"], r["step"]) for r in rows if r["reconstructor"] == "nearest"}
    assert steps == {(r["session"], r["step"]) for r in rows if r["reconstructor"] == "hold"}
    assert {step for _, step in steps} == {0, 3, 6}
    summary = {entry["reconstructor"]: entry for entry in summarize(rows)}
    assert summary["hold"]["frames"] == summary["nearest"]["frames"] == len(steps)
    assert 5 < summary["nearest"]["psnr"] < 40


def test_memory_holds_back_a_one_off_contradiction_until_it_is_confirmed(run_1_1):
    (_, pixels, state, mask) = run_1_1[20]
    memory = MemoryBank(3, config=MemoryConfig(use_prior=False))
    rows, cols = uv_to_pixel(pixels[:, :2], 240, 256)
    memory.update(rows, cols, pixels[:, 2:], state, mask)
    canvas, confidence = memory.view(state)
    known = (confidence[rows, cols] == 1) & (rows >= HUD_ROWS)
    r, c = rows[known][:5], cols[known][:5]
    wrong = 1.0 - canvas[r, c]  # a one-off sighting (a score pop-up, debris) that contradicts the memory
    memory.update(r, c, wrong, state, mask)
    np.testing.assert_allclose(memory.view(state)[0][r, c], canvas[r, c])
    memory.update(r, c, wrong, state, mask)  # seen twice: a real change, which overwrites
    np.testing.assert_allclose(memory.view(state)[0][r, c], wrong)
    # with the hold-back off, the first contradiction already moves the memory
    eager = MemoryBank(3, config=MemoryConfig(use_prior=False, confirm_above=2.0))
    eager.update(rows, cols, pixels[:, 2:], state, mask)
    eager.update(r, c, wrong, state, mask)
    assert not np.allclose(eager.view(state)[0][r, c], canvas[r, c])


def test_a_checkpoint_of_the_first_44_state_fields_does_not_read_the_fields_appended_since(run_1_1):
    from dataclasses import replace

    from sgaps_env.state import LEGACY_STATE_FIELDS, STATE_FIELDS, STATE_INDEX

    spt = SPTReconstructor()
    assert spt.model.config.state_fields == LEGACY_STATE_FIELDS, "the shipped checkpoint predates them"
    _, pixels, state, mask = run_1_1[20]
    state, mask = state.copy(), mask.copy()
    appended = slice(LEGACY_STATE_FIELDS, len(STATE_FIELDS))
    changed, changed_mask = state.copy(), mask.copy()
    changed[appended], changed_mask[appended] = 0.25, 1.0
    inputs = {name: torch.as_tensor(value)[None] for name, value in
              (("state", state), ("state_mask", mask))}
    other = {name: torch.as_tensor(value)[None] for name, value in
             (("state", changed), ("state_mask", changed_mask))}
    with torch.no_grad():
        torch.testing.assert_close(spt.model.embed_state(inputs), spt.model.embed_state(other))
        reading_all = SparsePixelTransformer(replace(spt.model.config, state_fields=len(STATE_FIELDS)))
        assert not torch.allclose(reading_all.embed_state(inputs), reading_all.embed_state(other))
    state[STATE_INDEX["powerup_active"]] = mask[STATE_INDEX["powerup_active"]] = 1.0  # a power-up on screen
    for name, value in (("powerup_type", 0.0), ("powerup_screen_x", 100 / 256), ("powerup_screen_y", 120 / 256)):
        state[STATE_INDEX[name]], mask[STATE_INDEX[name]] = value, 1.0
    assert any(box.kind == "powerup" for box in sprite_boxes(state, mask))
    assert spt.inputs(pixels, state, mask)["sprite_valid"].sum() == len(sprite_boxes(state, mask)) - 1, \
        "its sprite layer has no template for the power-up either"
