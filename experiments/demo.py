"""SGAPS demo: play Super Mario Bros 1-1 seen through a few hundred sampled pixels, and look at it.

A simple player (run right, jump at enemies and walls, read from the RAM state vector) plays
--steps steps of SGAPS-SMB-v0, starting over whenever Mario dies. Every frame is sampled at
the same fixed pattern of --sample-count pixels, and rebuilt from its samples by
nearest-neighbour filling; the PSNR of that rebuild against the true frame is computed for
every step. It writes to --out:

  frames.png   a few moments of the run: true frame | sampled pixels | nearest-neighbour rebuild
  summary.txt  steps, frames, episodes, progress, speed, data per frame and PSNR statistics

    python experiments/demo.py                               # about 5 s on a laptop
    python experiments/demo.py --pattern uniform_grid --sample-count 1000 --out outputs/demo_grid
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python experiments/demo.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")  # headless: files only, no window
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from agents.players import PLAYERS, make_player
from experiments.cli import arg, parse_args
from models.baselines import nearest_reconstruction
from models.metrics import psnr
from sgaps_env import FRAME_HEIGHT, FRAME_WIDTH, PATTERNS, SGAPSSuperMarioBrosEnv, make_pattern
from sgaps_env.coords import channels_for, frame_values
from sgaps_env.render import sample_canvas


@dataclass
class Args:
    """Options of the demo."""

    steps: int = arg(300, "environment steps to play (the env restarts the stage whenever Mario dies)")
    stage: str = arg("1-1", "stage to play, 'W-S'")
    player: str = arg("run_right", "who presses the buttons", choices=sorted(PLAYERS))
    pattern: str = arg("random", "fixed sampling pattern used for every frame", choices=sorted(PATTERNS))
    sample_count: int = arg(500, "pixels sampled per frame")
    color: str = arg("gray", "colour mode of the samples: BT.601 luma or RGB", choices=["gray", "rgb"])
    frame_skip: int = arg(4, "NES frames per step")
    moments: int = arg(4, "moments of the run shown in frames.png, spread evenly over it")
    dot: int = arg(3, "side in pixels of the square drawn for each sample in frames.png (1 = honest size)")
    seed: int = arg(0, "seed of the pattern, the env's reset no-ops and the random player")
    out: Path = arg(Path("outputs/demo"), "folder to write frames.png and summary.txt into")
    progress: bool = arg(True, "show a progress bar")


@dataclass
class Moment:
    """One step kept for the figure."""

    step: int
    episode: int
    x_pos: int
    frame: np.ndarray  # (240, 256, 3) uint8, the true frame
    pixels: np.ndarray  # (N, 2 + C) the samples of that frame
    reconstruction: np.ndarray  # (240, 256, C) float32 in [0, 1]
    psnr: float


def moment_steps(steps: int, moments: int) -> list[int]:
    """Step indices at the centres of ``moments`` equal stretches of the run."""
    count = max(1, min(moments, steps))
    return sorted({int((i + 0.5) * steps / count) for i in range(count)})


def plot_moments(moments: list[Moment], args: Args, path: Path) -> None:
    """frames.png: one row per moment, true frame | sampled pixels | nearest-neighbour reconstruction."""
    rows = len(moments)
    figure, axes = plt.subplots(rows, 3, figsize=(13.5, 4.1 * rows + 0.9), squeeze=False, layout="constrained")
    total = FRAME_HEIGHT * FRAME_WIDTH
    figure.suptitle(f"SGAPS-SMB-v0, stage {args.stage}: the agent sees {args.sample_count} of {total:,} pixels "
                    f"({args.sample_count / total:.2%}), '{args.pattern}' pattern, {args.color}\n"
                    f"PSNR of the nearest-neighbour rebuild against the true frame"
                    f"{' (luma)' if args.color == 'gray' else ''}", fontsize=13)
    for row, moment in zip(axes, moments):
        row[0].imshow(moment.frame, interpolation="nearest")
        row[0].set_title(f"true frame: step {moment.step}, episode {moment.episode}, x = {moment.x_pos}", fontsize=11)
        row[1].imshow(sample_canvas(moment.pixels, dot=args.dot), interpolation="nearest")
        row[1].set_title(f"{len(moment.pixels)} sampled pixels (each drawn {args.dot}x{args.dot})", fontsize=11)
        picture = moment.reconstruction
        if picture.shape[2] == 1:
            row[2].imshow(picture[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            row[2].imshow(np.clip(picture, 0.0, 1.0), interpolation="nearest")
        row[2].set_title(f"nearest-neighbour rebuild: PSNR {moment.psnr:.1f} dB", fontsize=11)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(args: Args) -> dict:
    """Play, measure, draw; returns the summary's numbers."""
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.moments < 1 or args.dot < 1:
        raise ValueError(f"--moments and --dot must be at least 1, got {args.moments} and {args.dot}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    env = SGAPSSuperMarioBrosEnv(stage=args.stage, sample_count=args.sample_count, color=args.color,
                                 frame_skip=args.frame_skip, initial_pattern=args.pattern, return_frame=True)
    player = make_player(args.player, **({"seed": args.seed} if args.player == "random" else {}))
    coords = make_pattern(args.pattern, args.sample_count, np.random.default_rng(args.seed))
    keep = set(moment_steps(args.steps, args.moments))

    env_seconds = 0.0
    frames = 0  # emulated frames of the finished episodes
    episodes, deaths, flags, furthest_x = 1, 0, 0, 0
    psnrs = np.empty(args.steps)
    moments: list[Moment] = []
    start = time.perf_counter()
    tick = time.perf_counter()
    observation, info = env.reset(seed=args.seed, options={"coords": coords})
    env_seconds += time.perf_counter() - tick
    player.reset(args.seed)
    try:
        for step in tqdm(range(args.steps), desc="demo", unit="step", disable=not args.progress):
            buttons = player.act(observation, info)
            tick = time.perf_counter()
            observation, _, terminated, truncated, info = env.step({"buttons": buttons, "coords": coords})
            env_seconds += time.perf_counter() - tick

            reconstruction = nearest_reconstruction(observation["pixels"])
            psnrs[step] = psnr(reconstruction, frame_values(info["frame"], args.color))
            furthest_x = max(furthest_x, int(info["x_pos"]))
            if step in keep:
                moments.append(Moment(step, episodes, int(info["x_pos"]), info["frame"], observation["pixels"],
                                      reconstruction, float(psnrs[step])))
            if terminated or truncated:
                frames += info["frame_index"]
                flags += bool(info["flag_get"])
                deaths += not info["flag_get"]
                if step + 1 < args.steps:
                    tick = time.perf_counter()
                    observation, info = env.reset(options={"coords": coords})
                    env_seconds += time.perf_counter() - tick
                    player.reset()
                    episodes += 1
        if not (terminated or truncated):
            frames += info["frame_index"]
    finally:
        env.close()
    run_seconds = time.perf_counter() - start

    plot_moments(moments, args, out / "frames.png")

    channels = channels_for(args.color)
    sampled_bytes = args.sample_count * channels
    frame_bytes = FRAME_HEIGHT * FRAME_WIDTH * 3
    summary = {
        "steps": args.steps,
        "frames": int(frames),
        "episodes": episodes,
        "deaths": deaths,
        "flags": flags,
        "furthest_x": furthest_x,
        "env_steps_per_second": args.steps / env_seconds,
        "env_frames_per_second": frames / env_seconds,
        "run_seconds": run_seconds,
        "sample_count": args.sample_count,
        "pattern": args.pattern,
        "color": args.color,
        "sampled_bytes_per_frame": sampled_bytes,
        "frame_bytes": frame_bytes,
        "psnr_mean": float(psnrs.mean()),
        "psnr_min": float(psnrs.min()),
        "psnr_max": float(psnrs.max()),
    }
    text = "\n".join([
        f"SGAPS demo: stage {args.stage}, player {args.player}, seed {args.seed}",
        f"steps:              {args.steps} ({args.frame_skip} NES frames each)",
        f"emulated frames:    {frames} (including reset no-ops; fewer on the step where Mario dies)",
        f"episodes:           {episodes} ({deaths} ended by death, {flags} at the flag"
        f"{', the last one cut off by --steps' if episodes > deaths + flags else ''})",
        f"furthest x:         {furthest_x} (level pixels)",
        f"env speed:          {summary['env_steps_per_second']:.0f} steps/s = "
        f"{summary['env_frames_per_second']:.0f} emulated frames/s (env.reset/step only; "
        f"whole loop with reconstructions {run_seconds:.1f} s)",
        f"sample_count:       {args.sample_count} per frame, pattern '{args.pattern}' (fixed), color {args.color}",
        f"data per frame:     {sampled_bytes:,} bytes of sampled values ({args.sample_count} x {channels} uint8) vs "
        f"{frame_bytes:,} bytes for a full RGB frame ({sampled_bytes / frame_bytes:.2%}; "
        f"{FRAME_HEIGHT * FRAME_WIDTH * channels:,} bytes for a full {args.color} frame)",
        f"nearest-neighbour reconstruction PSNR over all {args.steps} steps: mean {summary['psnr_mean']:.2f} dB, "
        f"min {summary['psnr_min']:.2f} dB, max {summary['psnr_max']:.2f} dB",
    ])
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    print(f"\nwrote {(out / 'frames.png').resolve()}\n      {(out / 'summary.txt').resolve()}")
    return summary


if __name__ == "__main__":
    main(parse_args(Args, __doc__))
