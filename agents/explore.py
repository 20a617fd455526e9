"""Find demonstrations with the Go-Explore explorer: `python agents/explore.py --help`.

For every stage asked for, explores from each no-op start in ``--noops`` until a button sequence
reaches the flag (or the axe), replays it from reset to confirm it, and writes the stage's
demonstrations to ``--output/W-S.json`` (the format in ``agents/demonstrations.py``). The first
no-op start is explored from scratch; the others start from the sequences already found (often they
still work; where they die, exploration goes on from the furthest cell they reached). Stages run in
parallel, in local processes or as Ray tasks, and each stage is written as soon as it is done, so a
rerun only explores what is missing. One JSON line per explored start goes to ``--log``.

    python agents/explore.py                      # all 32 stages into agents/demos, 2 processes
    python agents/explore.py --stages 4-4 8-4 --workers 2 --max-frames 8000000
    python agents/explore.py --backend ray --address auto --workers 32   # on a Ray cluster
    python agents/explore.py --walk --stages 1-1 4-2 --noops 30 28      # routes that walk past the pipes
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm

from agents.collect import die_with_parent, kill_workers
from agents.demonstrations import (DEMONSTRATIONS_DIR, demonstration_path, load_demonstrations, measure_route,
                                   save_demonstrations)
from agents.explorer import Explorer
from sgaps_env import stage_names
from sgaps_env.cli import require_at_least, run_script

#: Seconds between the progress lines of a stage being explored.
REPORT_SECONDS = 120


@dataclass
class Args:
    """Options of the explorer."""

    stages: list[str] = field(default_factory=lambda: ["all"])
    """stages to explore, 'W-S' each; 'all' means the 32 stages ('train-worlds': 1-1..4-4, 'held-out-worlds')"""
    noops: list[int] = field(default_factory=lambda: [30, 29, 28, 27])
    """no-op starts to find a demonstration for (one per residue mod 4 lets the demonstration player
    start from any no-op count up to the largest: it waits the difference)"""
    max_frames: int = 6_000_000
    """NES frames to emulate per no-op start before giving up on it"""
    max_minutes: float = 60.0
    """wall-clock minutes per no-op start before giving up on it"""
    workers: int = 2
    """stages explored at once"""
    backend: Literal["local", "ray"] = "local"
    """where stages run: local processes or Ray tasks"""
    address: str | None = None
    """with --backend ray: the cluster to join (e.g. 'auto'); default: start Ray here"""
    seed: int = 0
    """exploration seed (each stage and start derives its own)"""
    output: Path = DEMONSTRATIONS_DIR
    """folder of the demonstration files"""
    log: Path | None = None
    """append one JSON line per explored start here (default: OUTPUT/exploration_log.jsonl)"""
    prefer_coins: bool = False
    """keep, per cell, the sequence with the most coins before the shortest, so opened hidden blocks are
    remembered (8-4 needs one as a step up to a pipe)"""
    ledges: bool = False
    """tell cells where Mario stands apart by the 16-pixel row he stands on, and try a few jumps to either side
    from each new one, so a chain of exact jumps (8-4: onto a hidden block, then onto a floating pipe) is
    found step by step"""
    walk: bool = False
    """find the walk route instead: a sequence that never presses down, so it walks the stretches of level
    that the main route skips through a pipe (only for stages whose main demonstrations have skips)"""
    remeasure: bool = False
    """replay every demonstration in --output, rewrite its spans, skips and loops, and exit (after their
    definitions change)"""
    redo: bool = False
    """explore again even for starts that already have a demonstration"""
    summary: bool = False
    """only print what the demonstration files in --output hold (per stage: starts, steps, goal x, frames
    emulated and wall time the explorer needed) and exit"""


def explore_stage(stage: str, noops: list[int], max_frames: int, max_seconds: float, seed: int, output: str,
                  redo: bool, prefer_coins: bool = False, ledges: bool = False, walk: bool = False,
                  remeasure: bool = False) -> list[dict]:
    """Explore one stage for each no-op start its route lacks; writes its file; returns one summary per start."""
    route = "walk" if walk else "main"
    kept, existing = [], []
    if demonstration_path(stage, output).is_file():
        loaded = load_demonstrations(stage, output)
        # written before files had spans and skips, or asked to measure again
        stale = [d for d in loaded if remeasure or d.spans is None or d.skips is None or d.loops is None]
        for demonstration in stale:
            measure_route(demonstration)
        if stale:
            save_demonstrations(loaded, output)
        if remeasure:
            return []
        kept = [d for d in loaded if d.route != route or not redo]
        existing = [d for d in kept if d.route == route]
        if walk and not any(d.skips for d in kept if d.route == "main"):
            return []  # no pipe skips level here: the main route already walks all of it
    have = {demonstration.noops for demonstration in existing}
    summaries = []
    stage_seed = seed * 1000 + int(stage[0]) * 10 + int(stage[2]) + (500 if walk else 0)
    for start in noops:
        if start in have:
            continue
        explorer = Explorer(stage, noops=start, seed=stage_seed * 100 + start, prefer_coins=prefer_coins,
                            ledges=ledges, never_down=walk)
        last_report = [time.perf_counter()]

        def report(partial, stage=stage, start=start, last_report=last_report):
            if time.perf_counter() - last_report[0] >= REPORT_SECONDS:
                last_report[0] = time.perf_counter()
                print(f"  {stage} noops={start}: {partial.frames_emulated:,} frames, {partial.cells} cells, "
                      f"furthest x {partial.furthest_x}, {partial.wall_seconds / 60:.0f} min", file=sys.stderr,
                      flush=True)

        try:
            result = explorer.run(max_frames=max_frames, max_seconds=max_seconds, warm_start=existing,
                                  progress=report)
        finally:
            explorer.close()
        summary = result.summary()
        summary["route"] = route
        summary["warm_started_from"] = sorted(have)
        summary["progress"] = result.history[-20:]
        summaries.append(summary)
        if result.demonstration is not None:
            result.demonstration.found = {"frames_emulated": result.frames_emulated,
                                          "wall_seconds": round(result.wall_seconds, 1),
                                          "seed": stage_seed * 100 + start, "warm_started": bool(existing)}
            result.demonstration.route = route
            existing.append(result.demonstration)
            kept.append(result.demonstration)
            have.add(start)
            save_demonstrations(kept, output)
        elif not existing:  # the other starts are as hard and have nothing to start from: give the time back
            break
    return summaries


def validate(args: Args) -> None:
    require_at_least(args, ["max_frames", "workers"])
    if args.max_minutes <= 0:
        raise ValueError(f"--max-minutes must be positive, got {args.max_minutes}")
    if not args.noops or any(not 0 <= n <= 10_000 for n in args.noops):
        raise ValueError(f"--noops must be integers in [0, 10000], got {args.noops}")
    if args.address is not None and args.backend != "ray":
        raise ValueError("--address is for --backend ray")


def describe(stages: list[str], directory: Path) -> list[dict]:
    """One row per stage with demonstrations in ``directory``: what they are and what finding them cost."""
    rows = []
    print(f"{'stage':>5}  {'starts':<12} {'walk':<6} {'steps':>11}  {'goal x':>6}  {'frames to find':>15}  "
          f"{'minutes':>7}")
    for stage in stages:
        if not demonstration_path(stage, directory).is_file():
            print(f"{stage:>5}  none")
            continue
        demonstrations = load_demonstrations(stage, directory)
        scratch = [d for d in demonstrations if not d.found.get("warm_started")] or demonstrations
        frames = sum(int(d.found.get("frames_emulated", 0)) for d in demonstrations)
        seconds = sum(float(d.found.get("wall_seconds", 0)) for d in demonstrations)
        steps = [len(d.actions) for d in demonstrations]
        row = {"stage": stage, "starts": sorted(d.noops for d in demonstrations if d.route == "main"),
               "walk_starts": sorted(d.noops for d in demonstrations if d.route == "walk"), "steps": steps,
               "goal_x": max(d.goal_x for d in demonstrations), "frames_emulated": frames, "wall_seconds": seconds,
               "first_frames_emulated": int(scratch[0].found.get("frames_emulated", 0))}
        rows.append(row)
        walk = ' '.join(map(str, row['walk_starts'])) or '-'
        print(f"{stage:>5}  {' '.join(map(str, row['starts'])):<12} {walk:<6} {min(steps):>5}-{max(steps):<5}  "
              f"{row['goal_x']:>6}  {frames:>15,}  {seconds / 60:>7.1f}")
    print(f"{len(rows)}/{len(stages)} stages; {sum(r['frames_emulated'] for r in rows):,} frames emulated in "
          f"{sum(r['wall_seconds'] for r in rows) / 60:.0f} minutes of exploration")
    return rows


def main(args: Args) -> list[dict]:
    validate(args)
    stages = stage_names(args.stages)
    if args.summary:
        return describe(stages, args.output)
    args.output.mkdir(parents=True, exist_ok=True)
    log_path = args.log or args.output / "exploration_log.jsonl"
    for stage in stages:  # a broken file is reported now, not after hours of exploring
        if not args.redo and demonstration_path(stage, args.output).is_file():
            load_demonstrations(stage, args.output)
    jobs = (args.noops, args.max_frames, args.max_minutes * 60, args.seed, str(args.output), args.redo,
            args.prefer_coins, args.ledges, args.walk, args.remeasure)
    summaries: list[dict] = []
    started = time.perf_counter()
    if args.backend == "ray":
        try:
            import ray
        except ImportError:
            raise ValueError("--backend ray needs Ray: install it with `pip install -e '.[ray]'`") from None
        from agents import explore as this_module

        ray.init(address=args.address, num_cpus=None if args.address else args.workers, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")
        remote = ray.remote(num_cpus=1)(this_module.explore_stage)
        pending = {remote.remote(stage, *jobs): stage for stage in stages}

        def finished():
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                yield pending.pop(done[0]), ray.get(done[0])
    else:
        executor = concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                                                          initializer=die_with_parent)
        futures = {executor.submit(explore_stage, stage, *jobs): stage for stage in stages}

        def finished():
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()
    interrupted = False
    try:
        with tqdm(total=len(stages), desc="stages", unit="stage") as bar, open(log_path, "a") as log:
            for stage, results in finished():
                for summary in results:
                    log.write(json.dumps(summary) + "\n")
                    log.flush()
                    summaries.append(summary)
                    tqdm.write(f"{stage} {summary['route']} route noops={summary['noops']}: "
                               f"{'found' if summary['found'] else 'NOT found'} after {summary['frames_emulated']:,} "
                               f"frames, {summary['wall_seconds']:.0f} s, {summary['cells']} cells, "
                               f"furthest x {summary['furthest_x']}", file=sys.stderr)
                bar.update()
    except KeyboardInterrupt:  # what was found is already written; the searches in progress are dropped
        interrupted = True
    finally:
        if args.backend == "ray":
            ray.shutdown()
        elif interrupted:
            kill_workers(executor)
        else:
            executor.shutdown(cancel_futures=True)
    missing = [s for s in stages if not demonstration_path(s, args.output).is_file()]
    print(f"{len(stages) - len(missing)}/{len(stages)} stages have demonstrations in {args.output} "
          f"({time.perf_counter() - started:.0f} s)" + (f"; none yet for {' '.join(missing)}" if missing else ""))
    return summaries


if __name__ == "__main__":
    run_script(main, Args, __doc__)
