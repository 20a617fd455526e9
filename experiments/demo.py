"""SGAPS demo: play Super Mario Bros seen through 500 sampled pixels, and rebuild every frame.

The RAM-aware heuristic player plays --steps steps of SGAPS-SMB-v0 on each of --stages (by default 1-1,
a stage of the training worlds 1-4, and 5-1, of the held-out worlds 5-8 that nothing shipped was built
from), starting over whenever Mario dies. Every frame is sampled at --sample-count pixels of the --pattern
(random patterns are redrawn every frame), and each frame is rebuilt from its samples and the state vector
by the --reconstructor (the level-agnostic ``tiles`` reconstructor with the shipped codebook, and the level
atlas of worlds 1-4 for the stages it holds; or the ``spt``) and by the non-learned --baseline, each with
its own memory of the session. PSNR, SSIM and foreground PSNR against the true frame are computed for
every step. It writes to --out:

  frames.png   a few moments of each stage: true frame | sampled pixels | reconstructor | baseline
  demo.gif     the runs: true frame | reconstructor | baseline
  summary.md   the metrics table per stage; summary.txt: the runs (steps, episodes, speed, bytes per frame)

    python experiments/demo.py                                 # about a minute on 2 CPU cores
    python experiments/demo.py --pattern uniform_grid --baseline telea --out outputs/demo_grid
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a file (python experiments/demo.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")  # headless: files only, no window
import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from agents.players import PLAYERS, make_player
from models.baselines import BASELINES, make_baseline
from models.metrics import frame_metrics
from models.memory import StagePriors
from models.spt import DEFAULT_CHECKPOINT, SPTReconstructor
from models.tile_reconstructor import DEFAULT_ATLAS, DEFAULT_CODEBOOK, TileReconstructor, load_codebook
from sgaps_env import FRAME_HEIGHT, FRAME_WIDTH, PATTERNS, SGAPSSuperMarioBrosEnv, stage_names
from sgaps_env.cli import run_script
from sgaps_env.coords import COLOR_CHANNELS, channels_for, frame_values
from sgaps_env.render import sample_canvas
from sgaps_env.rollout import Rollout
from sgaps_env.sampler import PatternSampler
from sgaps_env.worlds import stage_group


@dataclass
class Args:
    """Options of the demo."""

    steps: int = 300
    """environment steps to play on each stage (the env restarts the stage whenever Mario dies)"""
    stages: list[str] = field(default_factory=lambda: ["1-1", "5-1"])
    """stages to play, 'W-S' (worlds 1-4 are the training worlds, 5-8 held out)"""
    reconstructor: Literal["tiles", "spt"] = "tiles"
    """the reconstructor shown: the level-agnostic tile reconstructor, or the SPT"""
    codebook: Path = DEFAULT_CODEBOOK
    """tile codebook (the shipped one by default)"""
    atlas: Path | None = DEFAULT_ATLAS
    """level atlas the tile reconstructor uses on the levels it holds (None: none)"""
    player: Literal[*sorted(PLAYERS)] = "heuristic"
    """who presses the buttons"""
    pattern: Literal[*sorted(PATTERNS)] = "random"
    """sampling pattern ('random' and 'stratified' are redrawn every frame)"""
    sample_count: int = 500
    """pixels sampled per frame"""
    color: Literal[*sorted(COLOR_CHANNELS)] = "rgb"
    """colour mode of the samples (the checkpoint's mode)"""
    checkpoint: Path = DEFAULT_CHECKPOINT
    """SPT checkpoint (the shipped one by default), for --reconstructor spt"""
    baseline: Literal[*sorted(BASELINES)] = "hold"
    """non-learned reconstructor shown beside the reconstructor"""
    gif_every: int = 2
    """put every n-th step into demo.gif (0: no GIF)"""
    frame_skip: int = 4
    """NES frames per step"""
    moments: int = 4
    """moments of the run shown in frames.png, spread evenly over it"""
    dot: int = 3
    """side in pixels of the square drawn for each sample in frames.png (1 = honest size)"""
    seed: int = 0
    """seed of the pattern, the env's reset no-ops and the random player"""
    out: Path = Path("outputs/demo")
    """folder to write frames.png, demo.gif and the summaries into"""
    progress: bool = True
    """show a progress bar"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.sample_count < 1:
        raise ValueError(f"--sample-count must be at least 1, got {args.sample_count}")
    if args.moments < 1 or args.dot < 1:
        raise ValueError(f"--moments and --dot must be at least 1, got {args.moments} and {args.dot}")
    if args.gif_every < 0:
        raise ValueError(f"--gif-every must be 0 (no GIF) or a positive step interval, got {args.gif_every}")
    if args.frame_skip < 1:
        raise ValueError(f"--frame-skip must be at least 1, got {args.frame_skip}")
    if not args.stages:
        raise ValueError("--stages needs at least one stage, e.g. --stages 1-1 5-1")
    stage_names(args.stages)  # a ValueError naming a bad stage


class StopwatchEnv(gym.Wrapper):
    """Adds up the seconds spent in the wrapped env's ``reset`` and ``step``: the env's own speed,
    without the reconstructions the demo runs between its steps."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.seconds = 0.0

    def reset(self, **kwargs):
        start = time.perf_counter()
        try:
            return self.env.reset(**kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    def step(self, action):
        start = time.perf_counter()
        try:
            return self.env.step(action)
        finally:
            self.seconds += time.perf_counter() - start


@dataclass
class Moment:
    """One step kept for the figure."""

    stage: str
    step: int
    episode: int
    x_pos: int
    frame: np.ndarray  # (240, 256, 3) uint8, the true frame
    pixels: np.ndarray  # (N, 2 + C) the samples of that frame
    model: np.ndarray  # (240, 256, C) float32 in [0, 1]
    baseline: np.ndarray
    model_psnr: float
    baseline_psnr: float


def moment_steps(steps: int, moments: int) -> list[int]:
    """Step indices at the centres of ``moments`` equal stretches of the run."""
    count = max(1, min(moments, steps))
    return sorted({int((i + 0.5) * steps / count) for i in range(count)})


def show(axis, picture: np.ndarray) -> None:
    if picture.shape[2] == 1:
        axis.imshow(picture[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        axis.imshow(np.clip(picture, 0.0, 1.0), interpolation="nearest")


def plot_moments(moments: list[Moment], args: Args, path: Path) -> None:
    """frames.png: one row per moment, true frame | sampled pixels | reconstructor | baseline."""
    rows = len(moments)
    figure, axes = plt.subplots(rows, 4, figsize=(18, 4.1 * rows + 0.9), squeeze=False, layout="constrained")
    total = FRAME_HEIGHT * FRAME_WIDTH
    figure.suptitle(f"SGAPS-SMB-v0, stages {', '.join(map(stage_label, args.stages))}: the reconstructors see "
                    f"{args.sample_count} of {total:,} pixels ({args.sample_count / total:.2%}) per frame, "
                    f"'{args.pattern}' pattern, {args.color}, and the RAM state vector", fontsize=13)
    for row, moment in zip(axes, moments):
        row[0].imshow(moment.frame, interpolation="nearest")
        row[0].set_title(f"{stage_label(moment.stage)}: step {moment.step}, episode {moment.episode}, "
                         f"x = {moment.x_pos}", fontsize=11)
        row[1].imshow(sample_canvas(moment.pixels, dot=args.dot), interpolation="nearest")
        row[1].set_title(f"{len(moment.pixels)} sampled pixels (each drawn {args.dot}x{args.dot})", fontsize=11)
        show(row[2], moment.model)
        row[2].set_title(f"{args.reconstructor}: PSNR {moment.model_psnr:.1f} dB", fontsize=11)
        show(row[3], moment.baseline)
        row[3].set_title(f"{args.baseline} baseline: PSNR {moment.baseline_psnr:.1f} dB", fontsize=11)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.savefig(path, dpi=100)
    plt.close(figure)


def stage_label(stage: str) -> str:
    """``"5-1 (held-out world)"``: a stage and its world group."""
    try:
        return f"{stage} ({'training' if stage_group(stage) == 'worlds 1-4' else 'held-out'} world)"
    except ValueError:
        return stage


def to_uint8(picture: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` in [0, 1] -> ``(H, W, 3)`` uint8."""
    picture = np.clip(picture, 0.0, 1.0)
    if picture.shape[2] == 1:
        picture = np.repeat(picture, 3, axis=2)
    return (picture * 255).round().astype(np.uint8)


def write_gif(panels: list[np.ndarray], path: Path, frame_ms: int) -> None:
    """Animated GIF of ``(H, 3W + gaps, 3)`` uint8 panels (Pillow comes with matplotlib)."""
    from PIL import Image

    images = [Image.fromarray(panel) for panel in panels]
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)


def make_reconstructor(args: Args):
    """The reconstructor shown, in the demo's colour mode."""
    if args.reconstructor == "spt":
        spt = SPTReconstructor(args.checkpoint)
        if spt.channels != channels_for(args.color):
            raise ValueError(f"{args.checkpoint} reconstructs {'RGB' if spt.channels == 3 else 'luma'}: "
                             f"use --color {'rgb' if spt.channels == 3 else 'gray'}")
        return spt
    atlas = StagePriors.load(args.atlas)[0] if args.atlas is not None else None
    return TileReconstructor(load_codebook(args.codebook)[0], atlas=atlas)


@dataclass
class StageRun:
    """What one stage's run left: per-step metrics of both reconstructors, the moments and GIF panels."""

    stage: str
    metrics: dict[str, list[dict]]
    psnrs: np.ndarray
    moments: list[Moment]
    panels: list[np.ndarray]
    summaries: list
    env_seconds: float


def play_stage(args: Args, stage: str, model, baseline, bar) -> StageRun:
    """Play --steps steps of ``stage``, rebuilding every frame with ``model`` and ``baseline``."""
    env = StopwatchEnv(SGAPSSuperMarioBrosEnv(stage=stage, sample_count=args.sample_count, color=args.color,
                                              frame_skip=args.frame_skip, initial_pattern=args.pattern,
                                              return_frame=True))
    player = make_player(args.player, **({"seed": args.seed} if args.player == "random" else {}))
    sampler = PatternSampler(args.pattern, args.sample_count)
    keep = set(moment_steps(args.steps, args.moments))
    run = StageRun(stage, {args.reconstructor: [], args.baseline: []}, np.empty(args.steps), [], [], [], 0.0)
    # every episode has at least one step, so --steps episodes always reach --steps steps
    rollout = Rollout(env, player, sampler, seed=args.seed, episodes=args.steps, total_steps=args.steps)
    played = 0
    try:
        for step in rollout:
            if step.step == 0:  # a new episode: each reconstructor starts a fresh memory of it
                model.reset()
                baseline.reset()
                continue
            observation, info = step.observation, step.info
            truth = frame_values(info["frame"], args.color)
            pictures = {}
            for name, reconstructor in ((args.reconstructor, model), (args.baseline, baseline)):
                tick = time.perf_counter()
                pictures[name] = reconstructor.reconstruct(observation["pixels"], observation["state"],
                                                           observation["state_mask"])
                elapsed = (time.perf_counter() - tick) * 1000
                run.metrics[name].append({**frame_metrics(pictures[name], truth, observation["state"],
                                                          observation["state_mask"]), "ms": elapsed})
            run.psnrs[played] = run.metrics[args.reconstructor][-1]["psnr"]
            if played in keep:
                run.moments.append(Moment(stage, played, step.episode + 1, int(info["x_pos"]), info["frame"],
                                          observation["pixels"], pictures[args.reconstructor],
                                          pictures[args.baseline], run.metrics[args.reconstructor][-1]["psnr"],
                                          run.metrics[args.baseline][-1]["psnr"]))
            if args.gif_every and played % args.gif_every == 0:
                gap = np.full((FRAME_HEIGHT, 4, 3), 255, np.uint8)
                run.panels.append(np.concatenate([info["frame"], gap, to_uint8(pictures[args.reconstructor]), gap,
                                                  to_uint8(pictures[args.baseline])], axis=1))
            played += 1
            bar.update()
    finally:
        env.close()
    run.summaries, run.env_seconds = rollout.summaries, env.seconds
    return run


def stage_summary(args: Args, run: StageRun) -> dict:
    """The numbers of one stage's run."""
    frames = sum(summary.emulated_frames for summary in run.summaries)  # reset no-ops included
    return {
        "steps": args.steps,
        "frames": int(frames),
        "episodes": len(run.summaries),
        "deaths": sum(summary.terminated and not summary.flag_get for summary in run.summaries),
        "flags": sum(summary.flag_get for summary in run.summaries),
        "furthest_x": max(summary.furthest_x for summary in run.summaries),
        "env_steps_per_second": args.steps / run.env_seconds,
        "env_frames_per_second": frames / run.env_seconds,
        **{f"{name}_{key}": float(np.nanmean([row[key] for row in rows]))
           for name, rows in run.metrics.items() for key in rows[0]},
        "psnr_mean": float(run.psnrs.mean()),
        "psnr_min": float(run.psnrs.min()),
        "psnr_max": float(run.psnrs.max()),
    }


def main(args: Args) -> dict:
    """Play, measure, draw; returns the summary's numbers (``stages``: per stage)."""
    validate(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, baseline = make_reconstructor(args), make_baseline(args.baseline)
    start = time.perf_counter()
    with tqdm(total=args.steps * len(args.stages), desc="demo", unit="step", disable=not args.progress) as bar:
        runs = [play_stage(args, stage, model, baseline, bar) for stage in args.stages]
    run_seconds = time.perf_counter() - start

    plot_moments([moment for run in runs for moment in run.moments], args, out / "frames.png")
    panels = [panel for run in runs for panel in run.panels]
    if panels:
        write_gif(panels, out / "demo.gif", frame_ms=40 * args.gif_every)
    table = ["| stage | reconstructor | PSNR (dB) | SSIM | foreground PSNR (dB) | ms/frame |", "|---|---|---|---|---|---|"]
    for run in runs:
        for name, rows in run.metrics.items():
            mean = {key: float(np.nanmean([row[key] for row in rows])) for key in rows[0]}
            table.append(f"| {stage_label(run.stage)} | {name} | {mean['psnr']:.2f} | {mean['ssim']:.3f} | "
                         f"{mean['foreground_psnr']:.2f} | {mean['ms']:.1f} |")
    model_file = args.checkpoint.name if args.reconstructor == "spt" else (
        f"{args.codebook.name}" + (f" + atlas {args.atlas.name}" if args.atlas is not None else ""))
    (out / "summary.md").write_text(
        f"# SGAPS demo: stages {', '.join(args.stages)}, {args.player} player, {args.sample_count} {args.pattern} "
        f"{args.color} pixels per frame, {args.steps} steps each\n\nCommand: `python experiments/demo.py`; "
        f"{args.reconstructor}: `{model_file}`.\n\n" + "\n".join(table) + "\n")

    channels = channels_for(args.color)
    sampled_bytes = args.sample_count * channels
    frame_bytes = FRAME_HEIGHT * FRAME_WIDTH * 3
    stages = {run.stage: stage_summary(args, run) for run in runs}
    summary = {"stages": stages, "run_seconds": run_seconds, "sample_count": args.sample_count,
               "pattern": args.pattern, "color": args.color, "sampled_bytes_per_frame": sampled_bytes,
               "frame_bytes": frame_bytes}
    lines = [f"SGAPS demo: stages {', '.join(map(stage_label, args.stages))}, player {args.player}, seed {args.seed}, "
             f"reconstructor {args.reconstructor} ({model_file})"]
    for stage, numbers in stages.items():
        lines += [
            "",
            f"stage {stage_label(stage)}",
            f"steps:              {args.steps} ({args.frame_skip} NES frames each)",
            f"emulated frames:    {numbers['frames']} (including reset no-ops; fewer on the step where Mario dies)",
            f"episodes:           {numbers['episodes']} ({numbers['deaths']} ended by death, {numbers['flags']} at "
            f"the flag{', the last one cut off by --steps' if numbers['episodes'] > numbers['deaths'] + numbers['flags'] else ''})",
            f"furthest x:         {numbers['furthest_x']} (level pixels)",
            f"env speed:          {numbers['env_steps_per_second']:.0f} steps/s = "
            f"{numbers['env_frames_per_second']:.0f} emulated frames/s (env.reset/step only)",
            f"{args.reconstructor} reconstruction PSNR over all {args.steps} steps: mean {numbers['psnr_mean']:.2f} dB, "
            f"min {numbers['psnr_min']:.2f} dB, max {numbers['psnr_max']:.2f} dB",
        ]
    lines += [
        "",
        f"whole run:          {run_seconds:.1f} s with reconstructions",
        f"sample_count:       {args.sample_count} per frame, pattern '{args.pattern}', color {args.color}",
        f"data per frame:     {sampled_bytes:,} bytes of sampled values ({args.sample_count} x {channels} uint8) vs "
        f"{frame_bytes:,} bytes for a full RGB frame ({sampled_bytes / frame_bytes:.2%}; "
        f"{FRAME_HEIGHT * FRAME_WIDTH * channels:,} bytes for a full {args.color} frame)",
        "",
        *table,
    ]
    text = "\n".join(lines)
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    written = [out / name for name in ("frames.png", "demo.gif", "summary.md", "summary.txt") if (out / name).exists()]
    print("\nwrote " + "\n      ".join(str(path.resolve()) for path in written))
    return summary


if __name__ == "__main__":
    run_script(main, Args, __doc__)
