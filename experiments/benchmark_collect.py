"""What does recording cost? Throughput of agents/collect.py against the environment, and bytes per step.

In one run, on the same episodes (same seeds, player and sampling pattern):

  (a) the environment alone: the episodes played through SGAPS-SMB-v0 with nothing recorded;
  (b) collect.py with 1 worker: the same episodes recorded, full frames included;
  (c) collect.py with 2 workers: the same, in two processes (worker start-up included);
  (d) with --ray: collect.py --backend ray with 2 workers, on a Ray instance it starts (start-up included);
  (e) the environment alone in two processes at once: how much one process slows down beside another
      on this machine whatever it runs, against which (c)'s loss is read.

It prints steps per second of each, the ratios (b)/(a) (target >= 0.85) and (c)/(b) (target >= 1.7),
and the storage of the sessions (b) wrote, in bytes per recorded step, split by dataset
(target <= 2.5 KB per step with full frames). The measurements alternate over --rounds rounds, and
the medians are compared.

    python experiments/benchmark_collect.py                      # about 2 minutes
    python experiments/benchmark_collect.py --player run_right --steps 1000
    python experiments/benchmark_collect.py --ray                # (d) too: local processes against Ray
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tyro

from agents import collect
from agents.players import PLAYERS
from sgaps_env import parse_stage
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.coords import PATTERNS
from sgaps_env.session_file import list_sessions


@dataclass
class Args:
    """Options of the recording benchmark."""

    player: Literal[*sorted(PLAYERS)] = "heuristic"
    """who plays"""
    pattern: Literal[*sorted(PATTERNS)] = "random"
    """sampling pattern"""
    stage: str = "1-1"
    """stage the episodes are played on"""
    steps: int = 2400
    """steps each measurement records (at least; the last episode is completed)"""
    max_steps: int = 3000
    """steps after which an episode is cut off"""
    rounds: int = 2
    """rounds; each round runs (a), (b) and (c) once"""
    target_one: float = 0.85
    """target for (b)/(a): one worker against the environment alone"""
    target_two: float = 1.7
    """target for (c)/(b): two workers against one"""
    target_bytes: float = 2500.0
    """target for the bytes stored per step"""
    ray: bool = False
    """also measure (d): the Ray backend with 2 workers (needs `pip install -e '.[ray]'`)"""
    json: str | None = None
    """also write the numbers to this JSON file"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    require_at_least(args, ("steps", "max_steps", "rounds"))
    parse_stage(args.stage)


@dataclass
class Result:
    steps_per_second: dict[str, list[float]] = field(default_factory=lambda: {"env": [], "one": [], "two": []})
    #: steps per second of one worker while it plays an episode (start-up, idle and hand-over time left out)
    worker_rate: dict[str, list[float]] = field(default_factory=lambda: {"one": [], "two": []})
    #: the share of the workers' wall time spent in episodes (the rest: process start-up, the last
    #: episode's tail when one worker has run out of work, the driver's hand-over)
    busy: dict[str, list[float]] = field(default_factory=lambda: {"one": [], "two": []})
    #: (e): steps per second of each of two processes playing at once with nothing recorded
    env_beside_another: list[float] = field(default_factory=list)
    median: dict[str, float] = field(default_factory=dict)
    ratio_one: float = float("nan")
    ratio_two: float = float("nan")
    ratio_ray: float = float("nan")
    bytes_per_step: float = float("nan")
    bytes_by_dataset: dict[str, float] = field(default_factory=dict)
    recorded_steps: int = 0
    sessions: int = 0
    flags: int = 0


def collect_args(args: Args, output: Path, workers: int, backend: str = "local") -> collect.Args:
    return tyro.cli(collect.Args, args=[
        "--player", args.player, "--pattern", args.pattern, "--stages", args.stage, "--frames", str(args.steps),
        "--max-steps", str(args.max_steps), "--workers", str(workers), "--output", str(output), "--no-progress",
        "--backend", backend])


def play_without_recording(args: Args, steps_wanted: int | None = None, first_episode: int = 0,
                           episode_stride: int = 1) -> float:
    """(a): the episodes collect.py would record, played with nothing recorded; steps per second.

    ``first_episode`` and ``episode_stride`` split the episodes between processes playing at once (e).
    """
    options = collect_args(args, Path("unused.h5"), 1)
    plan = collect.stage_plan(options, options.stages[0], {})
    collect._env_for(plan.env_config, store_frames=False)  # building the env is start-up, not play
    steps, episode, started = 0, first_episode, time.perf_counter()
    while steps < (steps_wanted or args.steps):
        steps += collect.record_episode(collect.episode_task(options, plan, episode, {}), None)["steps"]
        episode += episode_stride
    return steps / (time.perf_counter() - started)


def play_in_two_processes(args: Args) -> list[float]:
    """(e): two processes play (a)'s episodes at once, nothing recorded; each one's steps per second,
    start-up left out. How much a process slows down beside another on this machine, recorder or not."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        futures = [pool.submit(play_without_recording, args, args.steps // 2, worker, 2) for worker in range(2)]
        return [future.result() for future in futures]


def record(args: Args, workers: int, folder: Path, backend: str = "local") -> tuple[float, Path, float, float]:
    """(b), (c) or (d): collect.py into a fresh file; steps per second, the file, one worker's steps per second
    while in an episode and the share of the workers' time spent in episodes."""
    output = folder / f"sessions-{backend}-{workers}.h5"
    if output.exists():
        output.unlink()
        shutil.rmtree(output.with_name(output.name + ".shards"))
    summary = collect.main(collect_args(args, output, workers, backend))
    steps, seconds, worker_seconds = summary["recorded_steps"], summary["seconds"], summary["worker_seconds"]
    return steps / seconds, output, steps / worker_seconds, worker_seconds / (workers * seconds)


def storage(path: Path) -> tuple[float, dict[str, float], int, int, int]:
    """Bytes per recorded step over every shard, the share of each dataset, steps, sessions and flags."""
    sessions = list_sessions(path)
    total_bytes, steps, flags, by_dataset = 0, 0, 0, {}
    for session in sessions:
        with session.group() as group:
            total_bytes += os.path.getsize(group.file.filename)  # the shard the index links to
            steps += int(group.attrs["steps"])
            flags += bool(group.attrs["flag_get"])
            for name, dataset in group.items():
                by_dataset[name] = by_dataset.get(name, 0) + dataset.id.get_storage_size()
    return (total_bytes / steps, {name: size / steps for name, size in sorted(by_dataset.items())}, steps,
            len(sessions), flags)


def main(args: Args) -> Result:
    validate(args)
    result = Result()
    folder = Path(tempfile.mkdtemp(prefix="sgaps-benchmark-collect-"))
    try:
        for round_index in range(args.rounds):
            print(f"round {round_index + 1}/{args.rounds}", flush=True)
            result.steps_per_second["env"].append(play_without_recording(args))
            result.env_beside_another.extend(play_in_two_processes(args))
            for name, workers in (("one", 1), ("two", 2)):
                rate, output, worker_rate, busy = record(args, workers, folder)
                result.steps_per_second[name].append(rate)
                result.worker_rate[name].append(worker_rate)
                result.busy[name].append(busy)
                if workers == 1:
                    one_file = output  # its storage is reported
            if args.ray:
                result.steps_per_second.setdefault("ray", []).append(record(args, 2, folder, "ray")[0])
        (result.bytes_per_step, result.bytes_by_dataset, result.recorded_steps, result.sessions,
         result.flags) = storage(one_file)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result.median = {name: statistics.median(values) for name, values in result.steps_per_second.items()}
    result.ratio_one = result.median["one"] / result.median["env"]
    result.ratio_two = result.median["two"] / result.median["one"]
    if args.ray:
        result.ratio_ray = result.median["ray"] / result.median["two"]

    print(f"\nRecording {args.player} on {args.stage}, pattern {args.pattern}, {args.steps} steps per measurement, "
          f"{args.rounds} rounds (steps/s per round in brackets)\n")
    names = {"env": "(a) environment alone, nothing recorded", "one": "(b) collect.py, 1 worker",
             "two": "(c) collect.py, 2 workers", "ray": "(d) collect.py --backend ray, 2 workers"}
    for name, label in names.items():
        if name not in result.steps_per_second:
            continue
        rounds = ", ".join(f"{value:.0f}" for value in result.steps_per_second[name])
        print(f"  {label:42s} {result.median[name]:7.0f} steps/s   [{rounds}]")
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    print(f"\n  {verdict(result.ratio_one >= args.target_one)}: (b)/(a) = {result.ratio_one:.3f}  "
          f"(target >= {args.target_one})")
    print(f"  {verdict(result.ratio_two >= args.target_two)}: (c)/(b) = {result.ratio_two:.3f}  "
          f"(target >= {args.target_two})")
    if args.ray:
        print(f"  (d)/(c) = {result.ratio_ray:.3f}: Ray tasks against local processes, both with 2 workers")
    # (c)/(b) = 2 x (worker rate in (c) / in (b)) x (busy share in (c) / in (b)): slower steps or idle workers
    rate = {name: statistics.median(values) for name, values in result.worker_rate.items()}
    busy = {name: statistics.median(values) for name, values in result.busy.items()}
    env_beside = statistics.median(result.env_beside_another)
    print(f"\n  where (c)/(b) goes:\n"
          f"    a recording worker plays {rate['one']:.0f} steps/s alone and {rate['two']:.0f} beside another "
          f"({rate['two'] / rate['one']:.3f}x);\n"
          f"    (e) the environment alone, nothing recorded, {result.median['env']:.0f} steps/s alone and "
          f"{env_beside:.0f} beside another ({env_beside / result.median['env']:.3f}x): what the machine allows;\n"
          f"    workers are in episodes {busy['one']:.1%} of the time in (b) and {busy['two']:.1%} in (c) "
          f"(the rest: process start-up, the last episode's tail, hand-over)")
    print(f"  {verdict(result.bytes_per_step <= args.target_bytes)}: {result.bytes_per_step:.0f} bytes per recorded "
          f"step, full frames included (target <= {args.target_bytes:.0f}); {result.sessions} sessions, "
          f"{result.recorded_steps} steps, {result.flags} reached the flag")
    print("\n  bytes per step by dataset (compressed): " + ", ".join(
        f"{name} {size:.0f}" for name, size in result.bytes_by_dataset.items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


if __name__ == "__main__":
    run_script(main, Args, __doc__)
