"""The experiment scripts: the dataclass command line, the demo and the environment benchmark."""
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `experiments`, `agents` and `models` live at the repo root
    sys.path.insert(0, str(ROOT))

from experiments import (ablate_memory, benchmark_env, benchmark_reconstructor, demo,  # noqa: E402
                         evaluate_reconstructors, train_reconstructor)
from experiments.cli import arg, build_parser, parse_args  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- experiments/cli.py ---------------------------------------------------------------------------------------


@dataclass
class Example:
    """A dataclass with every supported kind of field."""

    steps: int = arg(300, "steps to play")
    rate: float = arg(0.5, "a rate of 50% or so")
    name: str = arg("mario", "a name")
    out: Path = arg(Path("outputs/x"), "where to write")
    fast: bool = arg(False, "go fast")
    show: bool = arg(True, "show things")
    json: str | None = arg(None, "optional JSON file")
    color: str = arg("gray", "a colour", choices=["gray", "rgb"])
    mode: Literal["a", "b"] = arg("a", "a literal mode")
    sizes: list[int] = arg([1, 2], "some sizes")


def test_cli_defaults():
    args = parse_args(Example, "example", [])
    assert args == Example()
    assert isinstance(args.out, Path) and args.json is None and args.sizes == [1, 2]


def test_cli_converts_types():
    args = parse_args(Example, None, ["--steps", "7", "--rate", "1e-3", "--name", "luigi", "--out", "a/b",
                                      "--json", "r.json", "--color", "rgb", "--mode", "b", "--sizes", "3", "4", "5"])
    assert args.steps == 7 and isinstance(args.steps, int)
    assert args.rate == pytest.approx(1e-3) and isinstance(args.rate, float)
    assert args.name == "luigi" and args.out == Path("a/b") and args.json == "r.json"
    assert args.color == "rgb" and args.mode == "b" and args.sizes == [3, 4, 5]


def test_cli_bool_flags():
    assert parse_args(Example, None, ["--fast"]).fast is True
    assert parse_args(Example, None, ["--no-show"]).show is False
    assert parse_args(Example, None, ["--no-fast", "--show"]) == Example()


def test_cli_names_use_dashes():
    @dataclass
    class Underscored:
        sample_count: int = arg(500, "pixels per frame")

    assert parse_args(Underscored, None, ["--sample-count", "9"]).sample_count == 9


@pytest.mark.parametrize("argv", [["--steps", "many"], ["--rate", "x"], ["--color", "blue"], ["--mode", "c"],
                                  ["--unknown", "1"]])
def test_cli_rejects_bad_values(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(Example, None, argv)
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_cli_help_lists_every_option_with_help_and_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(Example, "The example's description.", ["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    assert "The example's description." in text
    for option in ["--steps", "--rate", "--name", "--out", "--fast", "--no-fast", "--show", "--no-show", "--json",
                   "--color", "--mode", "--sizes"]:
        assert option in text
    for help_text in ["steps to play (default: 300)", "a rate of 50% or so (default: 0.5)", "go fast (default: False)",
                      "optional JSON file (default: None)", "{gray,rgb}"]:
        assert help_text in text


def test_cli_refuses_fields_without_help_or_with_unparsable_types():
    @dataclass
    class NoHelp:
        steps: int = 3

    @dataclass
    class BadType:
        pairs: dict = arg({}, "a dict")

    with pytest.raises(TypeError, match="no help text"):
        build_parser(NoHelp)
    with pytest.raises(TypeError, match="cannot parse"):
        build_parser(BadType)
    with pytest.raises(TypeError, match="dataclass"):
        build_parser(int)


def test_cli_field_without_default_is_required(capsys):
    @dataclass
    class Required:
        stage: str = field(metadata={"help": "stage to play"})

    assert parse_args(Required, None, ["--stage", "1-2"]).stage == "1-2"
    with pytest.raises(SystemExit):
        parse_args(Required, None, [])
    assert "--stage" in capsys.readouterr().err


# --- the scripts' --help --------------------------------------------------------------------------------------


SCRIPTS = [demo, benchmark_env, train_reconstructor, evaluate_reconstructors, benchmark_reconstructor, ablate_memory]


@pytest.mark.parametrize("module", SCRIPTS, ids=[module.__name__.rsplit(".", 1)[1] for module in SCRIPTS])
def test_script_help_exits_0_and_mentions_every_option(module):
    result = subprocess.run([sys.executable, str(Path(module.__file__)), "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in fields(module.Args):
        assert f"--{option.name.replace('_', '-')}" in result.stdout
        assert " ".join(option.metadata["help"].split()[:3]) in " ".join(result.stdout.split())


# --- experiments/demo.py --------------------------------------------------------------------------------------


def _summary_number(text: str, label: str) -> float:
    match = re.search(rf"^{label}:\s+([0-9.]+)", text, re.MULTILINE)
    assert match, f"no '{label}:' line in summary.txt:\n{text}"
    return float(match.group(1))


def test_demo_writes_a_figure_and_a_sensible_summary(tmp_path, capsys):
    steps = 40
    args = demo.Args(steps=steps, out=tmp_path / "demo", progress=False)
    summary = demo.main(args)

    png = tmp_path / "demo" / "frames.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    import matplotlib.image

    picture = matplotlib.image.imread(png)
    assert picture.ndim == 3 and picture.shape[0] > 600 and picture.shape[1] > 1200  # 4 rows x 4 pictures
    assert picture.std() > 0.05  # not blank
    gif = tmp_path / "demo" / "demo.gif"
    assert gif.read_bytes()[:6] == b"GIF89a"
    from PIL import Image

    with Image.open(gif) as animation:
        assert animation.n_frames == steps // 2 and animation.size == (3 * 256 + 8, 240)
    table = (tmp_path / "demo" / "summary.md").read_text()
    assert "| spt |" in table and "| hold |" in table

    text = (tmp_path / "demo" / "summary.txt").read_text()
    printed = capsys.readouterr().out
    assert text.strip() in printed and f"wrote {png.resolve()}" in printed
    assert _summary_number(text, "steps") == steps
    assert _summary_number(text, "emulated frames") == summary["frames"]
    assert _summary_number(text, "episodes") == summary["episodes"] >= 1
    # each step emulates frame_skip frames, except the one where Mario dies (at least 1); each episode adds >= 1
    # reset no-op frame and at most noop_max + 1 of them
    episodes = summary["episodes"]
    assert 4 * steps - 2 * episodes <= summary["frames"] <= 4 * steps + 31 * episodes
    assert 40 < summary["furthest_x"] < 3300  # moved right, stayed inside 1-1
    assert summary["sample_count"] == 500 and summary["pattern"] == "random"
    assert summary["sampled_bytes_per_frame"] == 1500 and summary["frame_bytes"] == 240 * 256 * 3
    assert summary["env_frames_per_second"] > 0
    assert 5 < summary["psnr_min"] <= summary["psnr_mean"] <= summary["psnr_max"] <= 100
    # the shipped SPT, with its memory of the level, is far better than holding the samples seen so far
    assert summary["spt_psnr"] > summary["hold_psnr"] + 8 and summary["spt_psnr"] == pytest.approx(summary["psnr_mean"])
    assert f"mean {summary['psnr_mean']:.2f} dB" in text


def test_demo_moments_are_spread_over_the_run():
    assert demo.moment_steps(300, 4) == [37, 112, 187, 262]
    assert demo.moment_steps(3, 4) == [0, 1, 2]
    assert demo.moment_steps(1, 4) == [0]


def test_demo_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="--steps"):
        demo.main(demo.Args(steps=0, out=tmp_path, progress=False))


# --- experiments/benchmark_env.py -----------------------------------------------------------------------------


def test_benchmark_measures_three_positive_speeds_and_their_ratios():
    result = benchmark_env.measure(rounds=2, seconds=0.05, warmup=0.0, target=0.9)
    assert set(result.median_fps) == {"emulator", "gym_smb", "sgaps"}
    for name, median in result.median_fps.items():
        assert len(result.fps[name]) == 2
        assert all(fps > 0 for fps in result.fps[name])
        assert 10 < median < 1e6, (name, median)
        assert all(frames > 0 for frames in result.frames[name])
    assert result.ratio_sgaps == pytest.approx(result.median_fps["sgaps"] / result.median_fps["emulator"])
    assert result.ratio_gym_smb == pytest.approx(result.median_fps["gym_smb"] / result.median_fps["emulator"])
    assert result.passed == (result.ratio_sgaps >= 0.9)
    assert math.isfinite(result.sgaps_overhead_us_per_step) and math.isfinite(result.gym_smb_overhead_us_per_step)
    assert 0 < result.sgaps_step_us_without_emulation < 1e5
    assert 0 < result.expected_ratio_sgaps < 1
    # SGAPS steps emulate frame_skip frames each (plus reset no-ops, minus the frames cut by a death)
    for frames, steps in zip(result.frames["sgaps"], result.steps["sgaps"]):
        assert 3 * steps <= frames <= 4 * steps + 31 * (steps // 20 + 1)


def test_benchmark_main_prints_the_verdict_and_writes_json(tmp_path, capsys):
    import json

    path = tmp_path / "bench" / "numbers.json"
    args = benchmark_env.Args(rounds=1, seconds=0.05, warmup=0.0, json=str(path), progress=False)
    result = benchmark_env.main(args)
    out = capsys.readouterr().out
    assert re.search(r"^(PASS|FAIL): ", out, re.MULTILINE)
    assert "| environment | emulated frames/s (median) | vs pure emulator |" in out
    assert "ratio (c)/(a)" in out and "ratio (b)/(a)" in out and "us per step" in out
    numbers = json.loads(path.read_text())
    assert numbers["ratio_sgaps"] == pytest.approx(result.ratio_sgaps)
    assert set(numbers["median_fps"]) == {"emulator", "gym_smb", "sgaps"}


def test_benchmark_button_schedule():
    schedule = benchmark_env.button_schedule(48, 16)
    assert len(schedule) == 48 and schedule[:16] == [0x83] * 16 and schedule[16:] == [0x82] * 32
    with pytest.raises(ValueError):
        benchmark_env.button_schedule(8, 9)
