"""experiments/demo.py and experiments/benchmark_env.py (their command lines: tests/test_scripts.py)."""
import json
import re
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `experiments`, `agents` and `models` live at the repo root
    sys.path.insert(0, str(ROOT))

import tyro  # noqa: E402

from agents.players import make_player  # noqa: E402
from experiments import benchmark_env, demo  # noqa: E402
from models.metrics import psnr  # noqa: E402
from models.spt import DEFAULT_CHECKPOINT, SPTReconstructor  # noqa: E402
from sgaps_env import SGAPSSuperMarioBrosEnv  # noqa: E402
from sgaps_env.coords import frame_values  # noqa: E402
from sgaps_env.sampler import PatternSampler  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- experiments/demo.py --------------------------------------------------------------------------------------


def _summary_number(text: str, label: str) -> float:
    match = re.search(rf"^{label}:\s+([0-9.]+)", text, re.MULTILINE)
    assert match, f"no '{label}:' line in summary.txt:\n{text}"
    return float(match.group(1))


def replay_demo_game(steps: int, seed: int = 0, sample_count: int = 500) -> dict:
    """The demo's game played again without the demo: the same env, player and pattern seed, a plain
    reset/step loop, a fresh SPT; returns what the demo should report about it."""
    env = SGAPSSuperMarioBrosEnv(stage="1-1", sample_count=sample_count, color="rgb", frame_skip=4, return_frame=True)
    player, sampler, spt = make_player("heuristic"), PatternSampler("random", sample_count), SPTReconstructor(DEFAULT_CHECKPOINT)
    try:
        coords = sampler.reset(seed)
        player.reset(seed)
        observation, info = env.reset(seed=seed, options={"coords": coords})
        psnrs, furthest_x = [], int(info["x_pos"])
        for _ in range(steps):
            action = {"buttons": player.act(observation, info), "coords": sampler.next_coords(observation, info)}
            observation, _, terminated, truncated, info = env.step(action)
            assert not (terminated or truncated), "the replay expects one episode: shorten the run"
            picture = spt.reconstruct(observation["pixels"], observation["state"], observation["state_mask"])
            psnrs.append(psnr(picture, frame_values(info["frame"], "rgb")))
            furthest_x = max(furthest_x, int(info["x_pos"]))
        return {"psnrs": psnrs, "frames": int(info["frame_index"]), "furthest_x": furthest_x}
    finally:
        env.close()


def test_demo_reports_the_game_it_played_and_the_quality_of_its_reconstructions(tmp_path, capsys):
    steps = 20
    run = demo.main(demo.Args(steps=steps, stages=["1-1"], reconstructor="spt", out=tmp_path / "demo", progress=False))
    summary = run["stages"]["1-1"]
    replayed = replay_demo_game(steps)

    # the numbers describe this game, recomputed without the demo's loop
    assert summary["steps"] == steps and summary["episodes"] == 1 and summary["deaths"] == summary["flags"] == 0
    assert summary["frames"] == replayed["frames"]
    assert summary["furthest_x"] == replayed["furthest_x"] > 40  # Mario moved right
    assert summary["psnr_mean"] == pytest.approx(statistics.fmean(replayed["psnrs"]), abs=1e-3)
    assert summary["psnr_min"] == pytest.approx(min(replayed["psnrs"]), abs=1e-3)
    assert summary["psnr_max"] == pytest.approx(max(replayed["psnrs"]), abs=1e-3)
    # the shipped SPT, with its memory of the level, is far better than holding the samples seen so far
    assert summary["spt_psnr"] > summary["hold_psnr"] + 8

    # the files say the same
    text = (tmp_path / "demo" / "summary.txt").read_text()
    assert _summary_number(text, "steps") == steps
    assert _summary_number(text, "emulated frames") == replayed["frames"]
    assert _summary_number(text, "furthest x") == replayed["furthest_x"]
    assert f"mean {statistics.fmean(replayed['psnrs']):.2f} dB" in text
    printed = capsys.readouterr().out
    png = tmp_path / "demo" / "frames.png"
    assert text.strip() in printed and f"wrote {png.resolve()}" in printed
    assert re.search(r"^\| 1-1 \(training world\) \| spt \| [0-9.]+ \|", (tmp_path / "demo" / "summary.md").read_text(),
                     re.MULTILINE)

    assert png.read_bytes()[:8] == PNG_SIGNATURE
    import matplotlib.image

    picture = matplotlib.image.imread(png)
    assert picture.ndim == 3 and picture.shape[0] > 600 and picture.shape[1] > 1200  # 4 rows x 4 pictures
    assert picture.std() > 0.05  # not blank
    from PIL import Image

    with Image.open(tmp_path / "demo" / "demo.gif") as animation:
        assert animation.n_frames == steps // 2 and animation.size == (3 * 256 + 8, 240)


def test_the_default_demo_rebuilds_a_held_out_world_beside_a_training_one(tmp_path):
    run = demo.main(demo.Args(steps=24, moments=2, gif_every=0, out=tmp_path / "demo", progress=False))
    assert list(run["stages"]) == ["1-1", "5-1"]
    for stage, numbers in run["stages"].items():
        assert numbers["tiles_psnr"] > numbers["hold_psnr"] + 8, stage  # the level-agnostic reconstructor
    text = (tmp_path / "demo" / "summary.md").read_text()
    assert "| 5-1 (held-out world) | tiles |" in text and "| 1-1 (training world) | tiles |" in text


def test_demo_moments_are_spread_over_the_run():
    assert demo.moment_steps(300, 4) == [37, 112, 187, 262]
    assert demo.moment_steps(3, 4) == [0, 1, 2]
    assert demo.moment_steps(1, 4) == [0]


def test_demo_command_line_takes_its_choices_from_the_owning_constants():
    from agents.players import PLAYERS
    from models.baselines import BASELINES
    from sgaps_env.coords import PATTERNS

    args = tyro.cli(demo.Args, args=["--steps", "7", "--pattern", "uniform_grid", "--baseline", "telea",
                                     "--no-progress", "--out", "x"])
    assert (args.steps, args.pattern, args.baseline, args.progress, args.out) == (7, "uniform_grid", "telea", False,
                                                                                  Path("x"))
    for option, names in (("--pattern", PATTERNS), ("--baseline", BASELINES), ("--player", PLAYERS)):
        for name in names:
            assert getattr(tyro.cli(demo.Args, args=[option, name]), option[2:]) == name
        with pytest.raises(SystemExit) as exit_info:
            tyro.cli(demo.Args, args=[option, "no-such-name"])
        assert exit_info.value.code == 2


@pytest.mark.parametrize("changes, option", [({"steps": 0}, "--steps"), ({"moments": 0}, "--moments"),
                                             ({"gif_every": -1}, "--gif-every"), ({"sample_count": 0}, "--sample-count")])
def test_demo_rejects_bad_arguments_before_playing(tmp_path, changes, option):
    with pytest.raises(ValueError, match=option):
        demo.main(demo.Args(out=tmp_path / "never", progress=False, **changes))
    assert not (tmp_path / "never").exists()


# --- experiments/benchmark_env.py -----------------------------------------------------------------------------


def hand_made_result(emulator_fps, sgaps_fps, target=0.9, gym_smb_fps=(500.0, 500.0, 500.0)):
    """A BenchmarkResult with per-round numbers as measure() would leave them (frame_skip 4, 2 s rounds)."""
    result = benchmark_env.BenchmarkResult(rounds=len(emulator_fps), seconds=2.0, target=target, frame_skip=4,
                                           sample_count=500, color="gray")
    for name, fps, frames_per_step in (("emulator", emulator_fps, 1), ("gym_smb", gym_smb_fps, 1),
                                       ("sgaps", sgaps_fps, 4)):
        result.fps[name] = list(fps)
        result.elapsed[name] = [2.0] * len(fps)
        result.frames[name] = [int(value * 2.0) for value in fps]
        result.steps[name] = [int(value * 2.0) // frames_per_step for value in fps]
    result.sgaps_step_us_without_emulation = 400.0
    return result


def test_benchmark_verdict_compares_the_medians_of_the_rounds():
    # one disturbed round (the emulator's 4000, SGAPS's 100) moves neither median
    result = benchmark_env.compare(hand_made_result([1000.0, 4000.0, 1000.0], [950.0, 920.0, 100.0]))
    assert result.median_fps == {"emulator": 1000.0, "gym_smb": 500.0, "sgaps": 920.0}
    assert result.ratio_sgaps == pytest.approx(0.92) and result.ratio_gym_smb == pytest.approx(0.5)
    assert result.passed is True
    # emulation of 4 frames takes 4000 us at 1000 fps; 400 us on top predicts 4000 / 4400
    assert result.expected_ratio_sgaps == pytest.approx(4000 / 4400)
    # gym_smb: 1000 frames in 2 s where the emulator needs 1 s: 1 s over 1000 steps = 1000 us per step
    assert result.gym_smb_overhead_us_per_step == pytest.approx(1000.0)


def test_benchmark_verdict_fails_below_the_target():
    slow = benchmark_env.compare(hand_made_result([1000.0, 1000.0, 1000.0], [850.0, 890.0, 990.0]))
    assert slow.ratio_sgaps == pytest.approx(0.89) and slow.passed is False
    assert "FAIL: SGAPS runs at 89.0% " in benchmark_env.format_report(slow)
    fast = benchmark_env.compare(hand_made_result([1000.0, 1000.0, 1000.0], [850.0, 890.0, 990.0], target=0.85))
    assert fast.passed is True and "PASS: SGAPS runs at 89.0% " in benchmark_env.format_report(fast)


@pytest.mark.slow
def test_benchmark_measures_three_positive_speeds(tmp_path, capsys):
    path = tmp_path / "bench" / "numbers.json"
    result = benchmark_env.main(benchmark_env.Args(rounds=2, seconds=0.05, warmup=0.0, json=str(path),
                                                   progress=False))
    for name in benchmark_env.CONTESTANTS:
        assert len(result.fps[name]) == 2 and all(10 < fps < 1e6 for fps in result.fps[name])
    assert 0 < result.sgaps_step_us_without_emulation < 1e5
    # SGAPS steps emulate frame_skip frames each (plus reset no-ops, minus the frames cut by a death)
    for frames, steps in zip(result.frames["sgaps"], result.steps["sgaps"]):
        assert 3 * steps <= frames <= 4 * steps + 31 * (steps // 20 + 1)
    assert json.loads(path.read_text())["ratio_sgaps"] == pytest.approx(result.ratio_sgaps)
    assert re.search(r"^(PASS|FAIL): SGAPS runs at", capsys.readouterr().out, re.MULTILINE)


def test_benchmark_button_schedule():
    schedule = benchmark_env.button_schedule(48, 16)
    assert len(schedule) == 48 and schedule[:16] == [0x83] * 16 and schedule[16:] == [0x82] * 32
    with pytest.raises(ValueError):
        benchmark_env.button_schedule(8, 9)
