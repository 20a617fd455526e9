"""The experiment scripts: the dataclass command line, the demo (main job) and the speed benchmark."""
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from experiments import benchmark_env, demo
from experiments.cli import arg, build_parser, parse_args

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ExampleArgs:
    """Example options."""

    steps: int = arg(300, "steps to play")
    rate: float = arg(0.5, "a rate")
    name: str = arg("a", "a name", choices=["a", "b"])
    mode: Literal["x", "y"] = arg("x", "a mode")
    progress: bool = arg(True, "show a progress bar")
    out: Path = arg(Path("outputs"), "where to write")
    stages: list[str] = arg(["1-1"], "stages to play")
    json: str | None = arg(None, "optional JSON path")


def test_cli_defaults_types_and_flags():
    assert parse_args(ExampleArgs, argv=[]) == ExampleArgs()
    parsed = parse_args(ExampleArgs, argv=["--steps", "7", "--rate", "0.25", "--name", "b", "--mode", "y",
                                           "--no-progress", "--out", "x/y", "--stages", "1-1", "4-2",
                                           "--json", "r.json"])
    assert parsed == ExampleArgs(steps=7, rate=0.25, name="b", mode="y", progress=False, out=Path("x/y"),
                                 stages=["1-1", "4-2"], json="r.json")
    assert isinstance(parsed.out, Path)


def test_cli_rejects_bad_values_with_exit_status_2(capsys):
    for argv in (["--steps", "many"], ["--name", "c"], ["--mode", "z"], ["--unknown", "1"]):
        with pytest.raises(SystemExit) as stop:
            parse_args(ExampleArgs, argv=argv)
        assert stop.value.code == 2
    assert "invalid int value: 'many'" in capsys.readouterr().err


def test_cli_help_lists_every_option_with_its_help_and_default():
    text = build_parser(ExampleArgs, "Example.").format_help()
    for option, help_text in [("--steps", "steps to play"), ("--no-progress", "show a progress bar"),
                              ("--stages", "stages to play"), ("--json", "optional JSON path")]:
        assert option in text and help_text in text
    assert "default: 300" in text


def test_cli_refuses_fields_without_help():
    @dataclass
    class NoHelp:
        steps: int = 3

    with pytest.raises(TypeError, match="has no help text"):
        build_parser(NoHelp)


@pytest.mark.parametrize("script", ["experiments/demo.py", "experiments/benchmark_env.py"])
def test_scripts_explain_every_option(script):
    result = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    module = demo if "demo" in script else benchmark_env
    for name in module.Args.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in result.stdout


def test_demo_writes_its_picture_and_an_honest_summary(tmp_path):
    args = parse_args(demo.Args, argv=["--steps", "40", "--out", str(tmp_path), "--no-progress"])
    summary = demo.main(args)
    png = (tmp_path / "frames.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    text = (tmp_path / "summary.txt").read_text()
    assert "steps:              40" in text and "PSNR" in text
    assert summary["steps"] == 40 and summary["episodes"] >= 1
    # each step emulates frame_skip frames (fewer only on a death step), plus 1..31 reset no-ops per episode
    assert 4 * 40 - 4 * summary["episodes"] <= summary["frames"] <= 4 * 40 + 31 * summary["episodes"]
    assert 10 < summary["psnr_min"] <= summary["psnr_mean"] <= summary["psnr_max"] < 30
    assert summary["furthest_x"] > 100, "the run-right player moves right"
    assert summary["sampled_bytes_per_frame"] == 500


def test_demo_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="--steps must be at least 1"):
        demo.main(parse_args(demo.Args, argv=["--steps", "0", "--out", str(tmp_path)]))
    with pytest.raises(ValueError, match="unknown stage"):
        demo.main(parse_args(demo.Args, argv=["--stage", "9-9", "--out", str(tmp_path), "--steps", "2"]))


def test_benchmark_measures_all_three_and_derives_the_ratios():
    result = benchmark_env.measure(rounds=2, seconds=0.2, warmup=0.0, sample_count=100)
    for name in benchmark_env.CONTESTANTS:
        assert len(result.fps[name]) == 2 and all(fps > 100 for fps in result.fps[name])
        assert result.median_fps[name] == pytest.approx(np.median(result.fps[name]))
    assert result.ratio_sgaps == pytest.approx(result.median_fps["sgaps"] / result.median_fps["emulator"])
    assert result.ratio_gym_smb == pytest.approx(result.median_fps["gym_smb"] / result.median_fps["emulator"])
    assert result.passed == (result.ratio_sgaps >= result.target)
    # SGAPS takes frame_skip frames per step; gym-super-mario-bros one
    sgaps_frames_per_step = sum(result.frames["sgaps"]) / sum(result.steps["sgaps"])
    assert 3.5 < sgaps_frames_per_step < 5.0
    assert sum(result.frames["gym_smb"]) / sum(result.steps["gym_smb"]) == pytest.approx(1.0, abs=0.05)
    report = benchmark_env.format_report(result)
    assert f"{result.ratio_sgaps:.3f}" in report and ("PASS" in report or "FAIL" in report)


def test_benchmark_rejects_a_bad_button_schedule():
    with pytest.raises(ValueError, match="jump_frames"):
        benchmark_env.button_schedule(10, 11)
