"""How far do the players get? Play seeded episodes of single stages and tabulate their progress.

For each player in --players and each stage in --stages, one player (agents.make_player) plays
--episodes episodes in order in SGAPSSuperMarioBrosEnv(stage=..., sample_count=--sample-count):
episode i resets the env and the player with seed i (the env's seed draws the no-op start, the
player's seeds its own randomness). An episode ends at death, at the flag or after --max-steps
steps. The pixels play no part in choosing buttons, so a small sample count keeps it fast. The
result is a markdown table, one row per player and stage: the share of episodes that reach the
flag (info["flag_get"]), deaths, the mean and largest furthest x (info["x_pos"], level pixels) and
the mean number of steps.

    python experiments/evaluate_players.py                    # 3 players x 5 stages x 10 episodes
    python experiments/evaluate_players.py --players heuristic --stages 1-1 --episodes 20 --workers 2
    python experiments/evaluate_players.py --players heuristic --set heuristic.jitter=0 --json out.json
"""
from __future__ import annotations

import inspect
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

if __package__ in (None, ""):  # run as a file (python experiments/evaluate_players.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm

from agents.players import PLAYERS, make_player
from sgaps_env import SGAPSSuperMarioBrosEnv, parse_stage
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.rollout import Rollout
from sgaps_env.sampler import PatternSampler

DEFAULT_PLAYERS = ["heuristic", "run_right", "random"]
DEFAULT_STAGES = ["1-1", "1-2", "2-1", "3-1", "4-1"]


@dataclass
class Args:
    """Options of the evaluation."""

    players: list[Literal[*sorted(PLAYERS)]] = field(default_factory=lambda: list(DEFAULT_PLAYERS))
    """players to evaluate, by name"""
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))
    """stages to play, 'W-S' each"""
    episodes: int = 10
    """episodes per player and stage; episode i uses seed i for the env and the player"""
    max_steps: int = 3000
    """step cap per episode (an episode also ends at death or the flag)"""
    sample_count: int = 16
    """pixels sampled per frame (they play no part in choosing buttons)"""
    frame_skip: int = 4
    """NES frames per step"""
    set: list[str] = field(default_factory=list)
    """player options as PLAYER.KEY=VALUE (VALUE read as JSON, else as text), e.g. heuristic.jitter=0 heuristic.hop_hold=8"""
    workers: int = 1
    """processes playing (player, stage) pairs in parallel"""
    json: str | None = None
    """also write every episode and the table's numbers to this JSON file"""
    progress: bool = True
    """show a progress bar"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    require_at_least(args, ("episodes", "max_steps", "sample_count", "frame_skip", "workers"))
    for stage in args.stages:
        parse_stage(stage)
    parse_options(args.set, args.players)


@dataclass
class Episode:
    """The outcome of one episode."""

    player: str
    stage: str
    seed: int
    flag: bool  # info["flag_get"] at the end
    died: bool  # terminated without the flag
    furthest_x: int  # largest info["x_pos"] seen, level pixels
    steps: int


@dataclass
class Row:
    """One line of the table: a player on a stage, over its episodes."""

    player: str
    stage: str
    episodes: int
    flag_share: float
    deaths: int
    mean_x: float
    max_x: int
    mean_steps: float


def parse_options(settings: list[str], players: list[str]) -> dict[str, dict[str, Any]]:
    """``["heuristic.jitter=0", ...]`` -> ``{"heuristic": {"jitter": 0}}`` (values read as JSON, else text)."""
    options: dict[str, dict[str, Any]] = {}
    for setting in settings:
        name, dot, rest = setting.partition(".")
        key, equals, text = rest.partition("=")
        if not (dot and equals and key):
            raise ValueError(f"--set expects PLAYER.KEY=VALUE, e.g. heuristic.jitter=0, got {setting!r}")
        if name not in players:
            raise ValueError(f"--set {setting!r} names player {name!r}, which is not among --players {players}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        options.setdefault(name, {})[key] = value
    return options


def play_episodes(player_name: str, stage: str, episodes: int, max_steps: int = 3000, sample_count: int = 16,
                  frame_skip: int = 4, options: dict[str, Any] | None = None,
                  on_episode: Callable[[], None] | None = None) -> list[Episode]:
    """One player plays episodes 0..``episodes``-1 of ``stage`` in order, each cut off after ``max_steps`` steps.

    ``on_episode()`` is called after each episode (progress bars).
    """
    options = dict(options or {})
    # the env presses the player's button set: the one it is given, else its own default
    default = inspect.signature(PLAYERS[player_name]).parameters.get("button_set")
    buttons = options.get("button_set", "simple" if default is None else default.default)
    env = SGAPSSuperMarioBrosEnv(stage=stage, sample_count=sample_count, frame_skip=frame_skip, buttons=buttons)
    try:
        player = make_player(player_name, **options)
        sampler = PatternSampler("uniform_grid", sample_count)
        results = []
        for seed in range(episodes):
            rollout = Rollout(env, player, sampler, seed=seed, max_steps=max_steps)
            for _ in rollout:
                pass
            summary = rollout.summary
            results.append(Episode(player_name, stage, seed, summary.flag_get,
                                   summary.terminated and not summary.flag_get, summary.furthest_x, summary.steps))
            if on_episode is not None:
                on_episode()
        return results
    finally:
        env.close()


def _play(job: tuple) -> list[Episode]:
    return play_episodes(*job)


def summarize(episodes: list[Episode]) -> list[Row]:
    """One row per (player, stage), in order of first appearance."""
    groups: dict[tuple[str, str], list[Episode]] = {}
    for episode in episodes:
        groups.setdefault((episode.player, episode.stage), []).append(episode)
    rows = []
    for (player, stage), group in groups.items():
        rows.append(Row(player=player, stage=stage, episodes=len(group),
                        flag_share=sum(e.flag for e in group) / len(group),
                        deaths=sum(e.died for e in group),
                        mean_x=statistics.fmean(e.furthest_x for e in group),
                        max_x=max(e.furthest_x for e in group),
                        mean_steps=statistics.fmean(e.steps for e in group)))
    return rows


def format_table(rows: list[Row]) -> str:
    """The rows as a markdown table."""
    lines = ["| player | stage | episodes | reached the flag | deaths | furthest x (mean) | furthest x (max) "
             "| steps (mean) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.player} | {row.stage} | {row.episodes} | {row.flag_share:.0%} | {row.deaths} | "
                     f"{row.mean_x:,.0f} | {row.max_x:,} | {row.mean_steps:,.0f} |")
    return "\n".join(lines)


def evaluate(players: list[str], stages: list[str], episodes: int, max_steps: int = 3000, sample_count: int = 16,
             frame_skip: int = 4, options: dict[str, dict[str, Any]] | None = None, workers: int = 1,
             progress: bool = False) -> list[Episode]:
    """Every episode of every player on every stage, in the order (player, stage, seed)."""
    unknown = [name for name in players if name not in PLAYERS]
    if unknown:
        raise ValueError(f"unknown player(s) {unknown}: expected names from {sorted(PLAYERS)}")
    stages = [f"{w}-{s}" for w, s in (parse_stage(stage) for stage in stages)]  # validates, normalises
    if episodes < 1 or max_steps < 1 or workers < 1:
        raise ValueError(f"episodes, max_steps and workers must be at least 1, got {episodes}, {max_steps}, {workers}")
    options = options or {}
    jobs = [(player, stage, episodes, max_steps, sample_count, frame_skip, options.get(player, {}))
            for player in players for stage in stages]
    results: list[Episode] = []
    with tqdm(total=len(jobs) * episodes, desc="episodes", unit="episode", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                results += play_episodes(*job, on_episode=bar.update)
        else:
            # spawn, not fork: a parent that imported torch (or any threaded library) is unsafe to fork
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
                for group in pool.map(_play, jobs):
                    results += group
                    bar.update(episodes)
    return results


def main(args: Args) -> list[Row]:
    """Play, tabulate, print (and optionally write JSON); returns the table's rows."""
    validate(args)
    start = time.perf_counter()
    options = parse_options(args.set, args.players)
    episodes = evaluate(args.players, args.stages, args.episodes, args.max_steps, args.sample_count,
                        args.frame_skip, options, args.workers, args.progress)
    rows = summarize(episodes)
    seconds = time.perf_counter() - start
    print(f"{args.episodes} episode(s) per player and stage (seeds 0..{args.episodes - 1}), at most "
          f"{args.max_steps} steps of {args.frame_skip} frames each; {seconds:.0f} s")
    for name, settings in options.items():
        print(f"options of {name}: " + ", ".join(f"{key}={value!r}" for key, value in settings.items()))
    print()
    print(format_table(rows))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"args": asdict(args), "seconds": seconds, "rows": [asdict(r) for r in rows],
                                    "episodes": [asdict(e) for e in episodes]}, indent=2) + "\n")
        print(f"\nwrote {path.resolve()}")
    return rows


if __name__ == "__main__":
    run_script(main, Args, __doc__)
