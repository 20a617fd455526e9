"""How much does SGAPS-SMB-v0 cost on top of the NES emulator? Emulated NES frames per second of:

  (a) the pure emulator: nes-py's native frame_advance(byte) in a loop (no reward, no info);
  (b) gym-super-mario-bros' own env.step(byte): one frame per step, its reward and info dict;
  (c) SGAPS-SMB-v0: SGAPSSuperMarioBrosEnv(stage="1-1", sample_count=500, color="gray",
      frame_skip=4) (by default) with a fixed coords array, frames counted from info["frame_index"]
      (the reset no-op frames and the time spent in reset included).

All three play stage 1-1 with the same button schedule (right+B held, A held for part of
every period) and start over when Mario dies or reaches the flag. The contestants run
interleaved, --rounds rounds of --seconds each with the order rotated every round, so that
a noisy machine hurts them alike; the medians over the rounds are compared.

    python experiments/benchmark_env.py                 # about 35 s
    python experiments/benchmark_env.py --rounds 9 --json outputs/benchmark.json
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a file (python experiments/benchmark_env.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from gym_super_mario_bros import SuperMarioBrosEnv
from tqdm import tqdm

from sgaps_env import SGAPSSuperMarioBrosEnv, make_pattern
from sgaps_env.buttons import combo_to_byte
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.coords import COLOR_CHANNELS


@dataclass
class Args:
    """Options of the environment benchmark."""

    rounds: int = 5
    """rounds; each round runs every contestant once, in an order rotated per round"""
    seconds: float = 2.0
    """seconds each contestant runs in each round"""
    warmup: float = 0.5
    """seconds each contestant runs once, unmeasured, before the first round"""
    target: float = 0.90
    """target for the ratio SGAPS fps / pure-emulator fps; below it the verdict is FAIL"""
    sample_count: int = 500
    """pixels SGAPS samples per frame"""
    color: Literal[*sorted(COLOR_CHANNELS)] = "gray"
    """colour mode of the SGAPS samples"""
    frame_skip: int = 4
    """NES frames per SGAPS step"""
    jump_period: int = 48
    """period in frames of the button schedule: right+B always, A for --jump-frames of them"""
    jump_frames: int = 16
    """frames at the start of every period in which A is held too (Mario jumps)"""
    seed: int = 0
    """seed of the SGAPS reset no-ops and of the fixed random coords"""
    json: str | None = None
    """also write the numbers to this JSON file"""
    progress: bool = True
    """show a progress bar"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    require_at_least(args, ("rounds", "sample_count", "frame_skip"))
    if args.seconds <= 0 or args.warmup < 0:
        raise ValueError(f"--seconds must be positive and --warmup 0 or more, got {args.seconds} and {args.warmup}")
    if args.jump_period < 1 or not 0 <= args.jump_frames <= args.jump_period:
        raise ValueError(f"need --jump-period >= 1 and 0 <= --jump-frames <= --jump-period, got {args.jump_period} "
                         f"and {args.jump_frames}")


#: The contestants, in their order in round 0.
CONTESTANTS = ("emulator", "gym_smb", "sgaps")

RIGHT_B = combo_to_byte(("right", "B"))
RIGHT_A_B = combo_to_byte(("right", "A", "B"))

#: Frames (or steps) between two looks at the clock; also how often (a) checks for Mario's end.
CHUNK_FRAMES = 64


def button_schedule(period: int, jump_frames: int) -> list[int]:
    """Controller byte of each frame of one period: right+B, plus A for the first ``jump_frames`` frames."""
    if period < 1 or not 0 <= jump_frames <= period:
        raise ValueError(f"need jump_period >= 1 and 0 <= jump_frames <= jump_period, got {period} and {jump_frames}")
    return [RIGHT_A_B if t < jump_frames else RIGHT_B for t in range(period)]


# --- the three contestants: each runs for about `seconds` and returns (frames, steps, elapsed) -------------


def run_emulator(env: SuperMarioBrosEnv, schedule: list[int], seconds: float) -> tuple[int, int, float]:
    """(a) nes-py's native frame_advance in a loop; every CHUNK_FRAMES frames, start over if Mario's run ended."""
    frame_advance = env._env.frame_advance
    period = len(schedule)
    frames = 0
    t = 0  # frame of the button schedule
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(CHUNK_FRAMES):
            frame_advance(schedule[t % period])
            t += 1
        frames += CHUNK_FRAMES
        if env._get_terminated():  # dying, dead or at the flag: restore the start of 1-1 as (b) and (c) do
            env._restore()
            t = 0
        if time.perf_counter() >= deadline:
            break
    return frames, frames, time.perf_counter() - start


def run_gym_smb(env: SuperMarioBrosEnv, schedule: list[int], seconds: float) -> tuple[int, int, float]:
    """(b) gym-super-mario-bros' env.step: one frame per step plus the frames its own skips emulate."""
    extra = [0]
    native = env._env.frame_advance

    def counted_frame_advance(byte):  # the wrapper's animation skips (death, pipes) go through this method
        extra[0] += 1
        native(byte)

    env._frame_advance = counted_frame_advance
    period = len(schedule)
    steps = 0
    t = 0
    env.reset()
    start = time.perf_counter()
    deadline = start + seconds
    try:
        while True:
            for _ in range(CHUNK_FRAMES):
                _, _, terminated, _, _ = env.step(schedule[t % period])
                t += 1
                if terminated:
                    env.reset()
                    t = 0
            steps += CHUNK_FRAMES
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - start
    finally:
        del env._frame_advance
    return steps + extra[0], steps, elapsed


def run_sgaps(env: SGAPSSuperMarioBrosEnv, coords: np.ndarray, schedule: list[int], seconds: float,
              seed: int | None = None) -> tuple[int, int, float]:
    """(c) SGAPS-SMB-v0 steps with fixed coords; frames from info["frame_index"], resets included."""
    byte_to_index = {byte: i for i, byte in enumerate(env._button_bytes)}
    actions = [{"buttons": byte_to_index[byte], "coords": coords} for byte in schedule]
    period = len(schedule)
    chunk = max(1, CHUNK_FRAMES // env.frame_skip)
    frames = steps = 0  # frames of the finished episodes
    start = time.perf_counter()
    deadline = start + seconds
    _, info = env.reset(seed=seed, options={"coords": coords})
    t = 0
    while True:
        for _ in range(chunk):
            _, _, terminated, _, info = env.step(actions[t % period])
            t += env.frame_skip
            if terminated:
                frames += info["frame_index"]
                _, info = env.reset(options={"coords": coords})
                t = 0
        steps += chunk
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    return frames + info["frame_index"], steps, elapsed


def sgaps_step_cost_without_emulation(env: SGAPSSuperMarioBrosEnv, coords: np.ndarray, steps: int = 500,
                                      repeats: int = 5) -> float:
    """Median microseconds of an SGAPS step with the emulator stubbed out: everything a step does but emulate.

    Right after a reset the native frame advance is replaced by a no-op, so the RAM and the screen stay
    frozen (Mario never dies) while the step runs its button logic, reward and termination checks, pixel
    sampling, state vector and info. Unlike the fps ratios this barely depends on the machine's noise.
    """
    action = {"buttons": 0, "coords": coords}
    env.reset(options={"coords": coords})
    native = env._native_advance
    env._native_advance = lambda byte: None
    try:
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                env.step(action)
            timings.append((time.perf_counter() - start) / steps * 1e6)
    finally:
        env._native_advance = native
    env.reset(options={"coords": coords})
    return statistics.median(timings)


# --- measurement ---------------------------------------------------------------------------------------------


@dataclass
class BenchmarkResult:
    """Per-round measurements, medians and the verdict."""

    rounds: int
    seconds: float
    target: float
    frame_skip: int
    sample_count: int
    color: str
    fps: dict[str, list[float]] = field(default_factory=dict)  # emulated frames per second, per round
    frames: dict[str, list[int]] = field(default_factory=dict)
    steps: dict[str, list[int]] = field(default_factory=dict)
    elapsed: dict[str, list[float]] = field(default_factory=dict)
    median_fps: dict[str, float] = field(default_factory=dict)
    ratio_sgaps: float = float("nan")  # median (c) / median (a)
    ratio_gym_smb: float = float("nan")  # median (b) / median (a)
    sgaps_overhead_us_per_step: float = float("nan")  # median over rounds of (c)'s time beyond (a)'s per step
    gym_smb_overhead_us_per_step: float = float("nan")
    sgaps_step_us_without_emulation: float = float("nan")  # emulator stubbed out: the pure SGAPS cost of a step
    expected_ratio_sgaps: float = float("nan")  # what that cost alone predicts for (c)/(a)
    passed: bool = False
    machine: str = ""


def _overhead_us_per_step(frames: int, steps: int, elapsed: float, emulator_fps: float) -> float:
    """Time per step beyond what the pure emulator needs for the same frames, in microseconds."""
    return (elapsed - frames / emulator_fps) / steps * 1e6


def measure(rounds: int = 5, seconds: float = 2.0, warmup: float = 0.5, target: float = 0.90,
            sample_count: int = 500, color: str = "gray", frame_skip: int = 4, jump_period: int = 48,
            jump_frames: int = 16, seed: int = 0, progress: bool = False) -> BenchmarkResult:
    """Run the three contestants interleaved for ``rounds`` rounds of ``seconds`` each and compare them."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if seconds <= 0 or warmup < 0:
        raise ValueError(f"seconds must be positive and warmup non-negative, got {seconds} and {warmup}")
    schedule = button_schedule(jump_period, jump_frames)
    result = BenchmarkResult(rounds=rounds, seconds=seconds, target=target, frame_skip=frame_skip,
                             sample_count=sample_count, color=color,
                             machine=f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    emulator = SuperMarioBrosEnv(target=(1, 1))
    gym_smb = SuperMarioBrosEnv(target=(1, 1))
    sgaps = SGAPSSuperMarioBrosEnv(stage="1-1", sample_count=sample_count, color=color, frame_skip=frame_skip)
    try:
        emulator.reset()
        coords = make_pattern("random", sample_count, np.random.default_rng(seed))
        runners = {
            "emulator": lambda s: run_emulator(emulator, schedule, s),
            "gym_smb": lambda s: run_gym_smb(gym_smb, schedule, s),
            "sgaps": lambda s: run_sgaps(sgaps, coords, schedule, s, seed=seed),
        }
        if warmup > 0:
            for name in CONTESTANTS:
                runners[name](warmup)
        for name in CONTESTANTS:
            result.fps[name], result.frames[name], result.steps[name], result.elapsed[name] = [], [], [], []
        bar = tqdm(total=rounds * len(CONTESTANTS), desc="benchmark", unit="run", disable=not progress)
        for round_index in range(rounds):
            shift = round_index % len(CONTESTANTS)
            for name in CONTESTANTS[shift:] + CONTESTANTS[:shift]:
                bar.set_postfix_str(f"round {round_index + 1}/{rounds}: {name}")
                frames, steps, elapsed = runners[name](seconds)
                result.frames[name].append(frames)
                result.steps[name].append(steps)
                result.elapsed[name].append(elapsed)
                result.fps[name].append(frames / elapsed)
                bar.update()
        bar.close()
        result.sgaps_step_us_without_emulation = sgaps_step_cost_without_emulation(sgaps, coords)
    finally:
        emulator.close()
        gym_smb.close()
        sgaps.close()

    return compare(result)


def compare(result: BenchmarkResult) -> BenchmarkResult:
    """Fill in the medians, ratios, overheads and the verdict from the per-round measurements
    (``fps``, ``frames``, ``steps``, ``elapsed``, ``sgaps_step_us_without_emulation``); returns ``result``.

    The ratios compare medians over the rounds, so that one disturbed round moves neither side.
    """
    rounds = len(result.fps["emulator"])
    result.median_fps = {name: statistics.median(result.fps[name]) for name in CONTESTANTS}
    result.ratio_sgaps = result.median_fps["sgaps"] / result.median_fps["emulator"]
    result.ratio_gym_smb = result.median_fps["gym_smb"] / result.median_fps["emulator"]
    for name, attribute in (("sgaps", "sgaps_overhead_us_per_step"), ("gym_smb", "gym_smb_overhead_us_per_step")):
        per_round = [_overhead_us_per_step(result.frames[name][r], result.steps[name][r], result.elapsed[name][r],
                                           result.fps["emulator"][r]) for r in range(rounds)]
        setattr(result, attribute, statistics.median(per_round))
    emulation_us_per_step = result.frame_skip / result.median_fps["emulator"] * 1e6
    result.expected_ratio_sgaps = emulation_us_per_step / (emulation_us_per_step + result.sgaps_step_us_without_emulation)
    result.passed = result.ratio_sgaps >= result.target
    return result


# --- report --------------------------------------------------------------------------------------------------


def labels(result: BenchmarkResult) -> dict[str, str]:
    return {
        "emulator": "(a) nes-py `frame_advance` (pure emulator)",
        "gym_smb": "(b) gym-super-mario-bros `step` (1 frame/step)",
        "sgaps": f"(c) SGAPS-SMB-v0 `step` ({result.frame_skip} frames/step, {result.sample_count} px {result.color})",
    }


def format_report(result: BenchmarkResult) -> str:
    """The printed report: per-round fps, medians, ratios, overheads, the verdict and a markdown table."""
    names = labels(result)
    lines = [f"Emulated NES frames per second, stage 1-1, {result.rounds} round(s) x {result.seconds:g} s per "
             f"contestant, interleaved ({result.machine})", ""]
    width = max(len(label) for label in names.values())
    for name in CONTESTANTS:
        rounds = " ".join(f"{fps:7.0f}" for fps in result.fps[name])
        lines.append(f"  {names[name]:<{width}}  median {result.median_fps[name]:7.0f} fps   rounds: {rounds}")
    lines += [
        "",
        f"  ratio (c)/(a) SGAPS / pure emulator:            {result.ratio_sgaps:.3f}",
        f"  ratio (b)/(a) gym-super-mario-bros / emulator:  {result.ratio_gym_smb:.3f}",
        f"  SGAPS overhead over the pure emulator:           {result.sgaps_overhead_us_per_step:8.1f} us per step "
        f"of {result.frame_skip} frames (from the fps: noisy)",
        f"  gym-super-mario-bros overhead over the emulator: {result.gym_smb_overhead_us_per_step:8.1f} us per step "
        "of 1 frame (from the fps: noisy)",
        f"  SGAPS step cost besides emulation:               {result.sgaps_step_us_without_emulation:8.1f} us per step "
        f"(emulator stubbed out; the emulator needs {result.frame_skip / result.median_fps['emulator'] * 1e6:.0f} us "
        f"for {result.frame_skip} frames), so expect (c)/(a) ~ {result.expected_ratio_sgaps:.3f}",
        "",
        f"{'PASS' if result.passed else 'FAIL'}: SGAPS runs at {result.ratio_sgaps:.1%} of the pure emulator's "
        f"speed (target >= {result.target:.0%})",
        "",
        "| environment | emulated frames/s (median) | vs pure emulator |",
        "|---|---:|---:|",
    ]
    for name in CONTESTANTS:
        lines.append(f"| {names[name]} | {result.median_fps[name]:,.0f} | "
                     f"{result.median_fps[name] / result.median_fps['emulator']:.2f} |")
    return "\n".join(lines)


def main(args: Args) -> BenchmarkResult:
    validate(args)
    result = measure(rounds=args.rounds, seconds=args.seconds, warmup=args.warmup, target=args.target,
                     sample_count=args.sample_count, color=args.color, frame_skip=args.frame_skip,
                     jump_period=args.jump_period, jump_frames=args.jump_frames, seed=args.seed,
                     progress=args.progress)
    print(format_report(result))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(result), indent=2) + "\n")
        print(f"\nwrote {path.resolve()}")
    return result


if __name__ == "__main__":
    run_script(main, Args, __doc__)
