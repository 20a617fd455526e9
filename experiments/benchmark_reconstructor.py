"""How fast the SPT rebuilds a frame on this machine's CPU, beside OpenCV inpainting, in one run:
`python experiments/benchmark_reconstructor.py --help`.

A short real session is played first (the heuristic player on 1-1, --sample-count random pixels
per frame in the checkpoint's colour mode). Then, in --rounds interleaved rounds:

- SPT batch 1: the whole reconstructor per frame, in session order (memory view, model inputs,
  the network, the memory update), as the environment's scorer and the demo use it;
- SPT batched: the network on --batch frames' prepared inputs at once (frames/s);
- the level-agnostic tile reconstructor (``models/tile_reconstructor.py``, the shipped codebook, no atlas)
  per frame, in session order; it has no batched mode, so its frames/s is 1000 / its ms per frame;
- OpenCV Telea and Navier-Stokes inpainting and the nearest-neighbour fill of the same pixels.

Targets: SPT (issue 4) batched >= 100 frames/s and batch 1 <= 25 ms per frame for a 240 x 256 frame from
500 pixels; the tile reconstructor (issue 12) <= 15 ms per frame at batch 1 and >= 100 frames/s. The ratios
printed are measured side by side in this run.
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from agents.players import make_player
from models.baselines import make_baseline
from models.spt import DEFAULT_CHECKPOINT, SPTReconstructor, collate_inputs
from models.tile_reconstructor import DEFAULT_CODEBOOK, TileReconstructor, load_codebook
from sgaps_env import SGAPSSuperMarioBrosEnv
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.coords import color_for
from sgaps_env.rollout import Rollout
from sgaps_env.sampler import PatternSampler


@dataclass
class Args:
    """Options of the reconstructor benchmark."""

    checkpoint: Path = DEFAULT_CHECKPOINT
    """SPT checkpoint"""
    codebook: Path = DEFAULT_CODEBOOK
    """tile codebook of the level-agnostic reconstructor"""
    sample_count: int = 500
    """pixels per frame"""
    frames: int = 96
    """frames of the played session used for timing"""
    batch: int = 32
    """frames per batched network call"""
    rounds: int = 3
    """interleaved timing rounds (the median is reported)"""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    seed: int = 0
    """seed of the play and the sampling"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    require_at_least(args, ("sample_count", "frames", "batch", "rounds"))
    if args.frames < args.batch:
        raise ValueError(f"--frames {args.frames} is smaller than --batch {args.batch}: play more frames")
    if args.threads < 0:
        raise ValueError(f"--threads must be 0 (torch's default) or a positive count, got {args.threads}")


def play(args: Args, color: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(pixels, state, state_mask)`` of --frames steps of real play (reset rows left out)."""
    env = SGAPSSuperMarioBrosEnv(stage="1-1", sample_count=args.sample_count, color=color)
    rollout = Rollout(env, make_player("heuristic"), PatternSampler("random", args.sample_count), seed=args.seed,
                      episodes=args.frames, total_steps=args.frames)
    try:
        return [(step.observation["pixels"].copy(), step.observation["state"].copy(),
                 step.observation["state_mask"].copy()) for step in rollout if step.step > 0]
    finally:
        env.close()


def per_frame_ms(reconstructor, steps) -> float:
    reconstructor.reset()
    start = time.perf_counter()
    for pixels, state, mask in steps:
        reconstructor.reconstruct(pixels, state, mask)
    return (time.perf_counter() - start) * 1000 / len(steps)


def main(args: Args) -> dict:
    validate(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    spt = SPTReconstructor(args.checkpoint)
    color = color_for(spt.channels)
    steps = play(args, color)
    # the batched network sees inputs prepared in session order (the memory is sequential)
    spt.reset()
    prepared = []
    for pixels, state, mask in steps:
        prepared.append(spt.inputs(pixels, state, mask))
        spt.reconstruct(pixels, state, mask)
    batches = [collate_inputs(prepared[i:i + args.batch]) for i in range(0, len(prepared) - args.batch + 1, args.batch)]
    baselines = {name: make_baseline(name) for name in ("telea", "ns", "nearest")}
    tiles = TileReconstructor(load_codebook(args.codebook)[0])

    timings: dict[str, list[float]] = {"spt_batch1_ms": [], "spt_batched_fps": [], "tiles_ms": [],
                                       **{f"{name}_ms": [] for name in baselines}}
    with torch.inference_mode():
        spt.model(batches[0])  # warm-up
        for _ in range(args.rounds):
            timings["spt_batch1_ms"].append(per_frame_ms(spt, steps))
            start = time.perf_counter()
            for batch in batches:
                spt.model(batch)
            timings["spt_batched_fps"].append(len(batches) * args.batch / (time.perf_counter() - start))
            timings["tiles_ms"].append(per_frame_ms(tiles, steps))
            for name, baseline in baselines.items():
                timings[f"{name}_ms"].append(per_frame_ms(baseline, steps))
    result = {key: statistics.median(values) for key, values in timings.items()}
    print(f"{args.frames} frames of 1-1 play, {args.sample_count} {color} pixels each, torch threads "
          f"{torch.get_num_threads()}, median of {args.rounds} rounds")
    print(f"  SPT batch 1 (whole reconstructor): {result['spt_batch1_ms']:7.2f} ms/frame   target <= 25 ms   "
          f"{'PASS' if result['spt_batch1_ms'] <= 25 else 'FAIL'}")
    print(f"  SPT batched ({args.batch} frames):       {result['spt_batched_fps']:7.1f} frames/s  target >= 100  "
          f"{'PASS' if result['spt_batched_fps'] >= 100 else 'FAIL'}")
    print(f"  tiles batch 1 (whole reconstructor): {result['tiles_ms']:5.2f} ms/frame   target <= 15 ms   "
          f"{'PASS' if result['tiles_ms'] <= 15 else 'FAIL'}   = {1000 / result['tiles_ms']:.1f} frames/s "
          f"(target >= 100)")
    for name in baselines:
        ms = result[f"{name}_ms"]
        print(f"  {name:>7} per frame:               {ms:7.2f} ms/frame   SPT batch 1 / {name} = "
              f"{result['spt_batch1_ms'] / ms:.2f}x")
    return result


if __name__ == "__main__":
    run_script(main, Args, __doc__)
