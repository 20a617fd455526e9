"""How fast the SPT rebuilds a frame on this machine's CPU, beside OpenCV inpainting, in one run:
`python experiments/benchmark_reconstructor.py --help`.

A short real session is played first (the heuristic player on 1-1, --sample-count random pixels
per frame in the checkpoint's colour mode). Then, in --rounds interleaved rounds:

- SPT batch 1: the whole reconstructor per frame, in session order (memory view, model inputs,
  the network, the memory update), as the environment's scorer and the demo use it;
- SPT batched: the network on --batch frames' prepared inputs at once (frames/s);
- the level-agnostic tile reconstructor (``models/tile_reconstructor.py``, the shipped codebook, no atlas)
  per frame, in session order, on 1-1 and on each of --tile-stages (by default 6-3, the slowest stage of
  the held-out worlds in the evaluation; each played with the same player and seed). It has no batched
  network call: its numpy work is per session, so sessions scale with processes. Its batched throughput is
  measured with --workers worker processes at once, each rebuilding every one of those plays as its own
  session, in frames/s of wall time;
- OpenCV Telea and Navier-Stokes inpainting and the nearest-neighbour fill of the same pixels.

Targets: SPT (issue 4) batched >= 100 frames/s and batch 1 <= 25 ms per frame for a 240 x 256 frame from
500 pixels; the tile reconstructor (issue 12) <= 15 ms per frame at batch 1 and >= 100 frames/s. The ratios
printed are measured side by side in this run.
"""
from __future__ import annotations

import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
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
    tile_stages: list[str] = field(default_factory=lambda: ["6-3"])
    """stages the tile reconstructor is also timed on (besides 1-1)"""
    workers: int = 2
    """worker processes of the tile reconstructor's batched throughput (0 to skip it)"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    require_at_least(args, ("sample_count", "frames", "batch", "rounds"))
    if args.frames < args.batch:
        raise ValueError(f"--frames {args.frames} is smaller than --batch {args.batch}: play more frames")
    if args.threads < 0:
        raise ValueError(f"--threads must be 0 (torch's default) or a positive count, got {args.threads}")


def play(args: Args, color: str, stage: str = "1-1") -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(pixels, state, state_mask)`` of --frames steps of real play (reset rows left out)."""
    env = SGAPSSuperMarioBrosEnv(stage=stage, sample_count=args.sample_count, color=color)
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


def _tile_sessions(codebook: Path, sessions: list) -> int:
    """Rebuild each session's frames in turn with one tile reconstructor (a worker process's job); returns the
    frames rebuilt."""
    tiles = TileReconstructor(load_codebook(codebook)[0])
    tiles.reconstruct(*sessions[0][0])  # the per-colour-mode preparation, which a long-running worker has done
    for steps in sessions:
        tiles.reset()
        for pixels, state, mask in steps:
            tiles.reconstruct(pixels, state, mask)
    return sum(len(steps) for steps in sessions)


def tile_throughput(args: Args, sessions: list) -> float:
    """Frames/s of wall time with --workers processes each rebuilding every one of ``sessions`` at once;
    start-up (imports, the codebook) is left out by a warm-up round."""
    with ProcessPoolExecutor(args.workers) as pool:
        list(pool.map(_tile_sessions, [args.codebook] * args.workers, [sessions[:1]] * args.workers))
        start = time.perf_counter()
        frames = sum(pool.map(_tile_sessions, [args.codebook] * args.workers, [sessions] * args.workers))
        return frames / (time.perf_counter() - start)


def main(args: Args) -> dict:
    validate(args)
    if args.workers < 0:
        raise ValueError(f"--workers must be 0 (skip the batched tile timing) or a positive count, got {args.workers}")
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
    tile_plays = {"1-1": steps, **{stage: play(args, color, stage) for stage in args.tile_stages}}

    timings: dict[str, list[float]] = {"spt_batch1_ms": [], "spt_batched_fps": [],
                                       **{f"tiles_{stage}_ms": [] for stage in tile_plays},
                                       **{f"{name}_ms": [] for name in baselines}}
    with torch.inference_mode():
        spt.model(batches[0])  # warm-up
        for _ in range(args.rounds):
            for stage, play_steps in tile_plays.items():
                timings[f"tiles_{stage}_ms"].append(per_frame_ms(tiles, play_steps))
            timings["spt_batch1_ms"].append(per_frame_ms(spt, steps))
            start = time.perf_counter()
            for batch in batches:
                spt.model(batch)
            timings["spt_batched_fps"].append(len(batches) * args.batch / (time.perf_counter() - start))
            for name, baseline in baselines.items():
                timings[f"{name}_ms"].append(per_frame_ms(baseline, steps))
    result = {key: statistics.median(values) for key, values in timings.items()}
    if args.workers:
        result["tiles_batched_fps"] = statistics.median(tile_throughput(args, list(tile_plays.values()))
                                                        for _ in range(args.rounds))
    print(f"{args.frames} frames of 1-1 play, {args.sample_count} {color} pixels each, torch threads "
          f"{torch.get_num_threads()}, median of {args.rounds} rounds")
    print(f"  SPT batch 1 (whole reconstructor): {result['spt_batch1_ms']:7.2f} ms/frame   target <= 25 ms   "
          f"{'PASS' if result['spt_batch1_ms'] <= 25 else 'FAIL'}")
    print(f"  SPT batched ({args.batch} frames):       {result['spt_batched_fps']:7.1f} frames/s  target >= 100  "
          f"{'PASS' if result['spt_batched_fps'] >= 100 else 'FAIL'}")
    for stage in tile_plays:
        ms = result[f"tiles_{stage}_ms"]
        print(f"  tiles batch 1 on {stage} (whole reconstructor): {ms:5.2f} ms/frame   target <= 15 ms   "
              f"{'PASS' if ms <= 15 else 'FAIL'}   ({1000 / ms:.1f} frames/s on one core)")
    if args.workers:
        fps = result["tiles_batched_fps"]
        print(f"  tiles batched ({args.workers} worker processes, each rebuilding {', '.join(tile_plays)}): "
              f"{fps:7.1f} frames/s  target >= 100  {'PASS' if fps >= 100 else 'FAIL'}")
    for name in baselines:
        ms = result[f"{name}_ms"]
        print(f"  {name:>7} per frame:               {ms:7.2f} ms/frame   SPT batch 1 / {name} = "
              f"{result['spt_batch1_ms'] / ms:.2f}x")
    return result


if __name__ == "__main__":
    run_script(main, Args, __doc__)
