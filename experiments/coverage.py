"""How much of each level a session file shows: `python experiments/coverage.py data/all.h5`.

For every stage, the *level* is the x range, per area, that the stage's shipped demonstrations
show on screen on their way from the start to the flag (or axe): from the first to the last
16-pixel column of each area they pass through (the main level, and the pipe, bonus and exit areas
they use), less the columns past a loop that no play can put on screen (see
``agents.demonstrations.level_columns``). A recorded frame shows the 256 pixels right of the
camera's left edge in its area, so a stage's coverage is the fraction of the level's columns that at
least one recorded frame shows (in part).
Frames are attributed to stages by the world and stage in their state vectors, so whole-game
sessions count too. The report also gives the frames recorded per area.

    python experiments/coverage.py data/all.h5                    # the table
    python experiments/coverage.py data/all.h5 --plot coverage.png --json coverage.json
    python experiments/coverage.py data/all.h5 --target 0.95      # exit status 1 if a stage is below

Record a file that covers every stage with

    python agents/collect.py --player demonstration --buttons complex --stages all --episodes 10 \\
        --player-option follow_probability=0.5 --workers 2 --output data/all.h5
"""
from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro
from tqdm import tqdm

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.demonstrations import COLUMN_WIDTH, DEMONSTRATIONS_DIR, columns_to_spans, level_columns, screen_columns
from sgaps_env import stage_names
from sgaps_env.cli import run_script
from sgaps_env.session_file import list_sessions
from sgaps_env.state import field_ints

AREA_TYPES = {0: "water", 1: "ground", 2: "underground", 3: "castle"}


@dataclass
class Args:
    paths: tyro.conf.Positional[list[Path]]
    """session files (index .h5) to measure"""
    stages: list[str] = field(default_factory=lambda: ["all"])
    """stages to report, 'W-S' each; 'all' means the 32 stages ('train-worlds': 1-1..4-4, 'held-out-worlds')"""
    demonstrations: Path = DEMONSTRATIONS_DIR
    """folder of the demonstration files that define each level's extent"""
    target: float | None = None
    """exit with status 1 when a reported stage's coverage is below this fraction (e.g. 0.95)"""
    plot: Path | None = None
    """write a bar chart of the coverage per stage to this PNG"""
    json: Path | None = None
    """write the report as JSON here"""


@dataclass
class StageCoverage:
    stage: str
    level_columns: int
    shown_columns: int
    frames: int
    sessions: int
    frames_per_area: dict[str, int]
    #: stretches of the level no recorded frame shows: ``(area, area type, first column, last column)``
    missing: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return self.shown_columns / self.level_columns if self.level_columns else 0.0

    def as_dict(self) -> dict:
        return {"stage": self.stage, "coverage": round(self.coverage, 4), "level_columns": self.level_columns,
                "shown_columns": self.shown_columns, "frames": self.frames, "sessions": self.sessions,
                "frames_per_area": self.frames_per_area, "missing": [list(span) for span in self.missing]}


def area_name(area: int, area_type: int) -> str:
    return f"{area}/{AREA_TYPES.get(area_type, area_type)}"


def measure(paths: list[Path], stages: list[str], demonstrations: Path) -> list[StageCoverage]:
    """Coverage of ``stages`` by the sessions in ``paths``."""
    shown: dict[str, set] = defaultdict(set)
    frames: dict[str, Counter] = defaultdict(Counter)
    sessions: Counter = Counter()
    wanted = set(stages)
    for session in tqdm(list_sessions(paths), desc="sessions", unit="session"):
        states, _ = session.states()
        stage_of_frame = [f"{w + 1}-{s + 1}" for w, s in zip(field_ints(states, "world"), field_ints(states, "stage"))]
        for stage in set(stage_of_frame) & wanted:
            rows = np.array([key == stage for key in stage_of_frame])
            shown[stage] |= screen_columns(states[rows])
            areas = zip(field_ints(states[rows], "area"), field_ints(states[rows], "area_type"))
            frames[stage].update(area_name(int(a), int(t)) for a, t in areas)
            sessions[stage] += 1
    report = []
    for stage in stages:
        try:
            level = level_columns(stage, demonstrations)
        except FileNotFoundError:  # no demonstration defines the level's extent: reported as 0 of 0
            level = set()
        report.append(StageCoverage(stage, len(level), len(level & shown[stage]), sum(frames[stage].values()),
                                    sessions[stage], dict(sorted(frames[stage].items())),
                                    columns_to_spans(level - shown[stage])))
    return report


def plot_coverage(report: list[StageCoverage], path: Path, target: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(12, 3.5))
    values = [100 * row.coverage for row in report]
    colors = ["tab:green" if target is None or row.coverage >= target else "tab:red" for row in report]
    axis.bar([row.stage for row in report], values, color=colors)
    if target is not None:
        axis.axhline(100 * target, color="black", linestyle="--", linewidth=1, label=f"target {100 * target:.0f}%")
        axis.legend(loc="lower right")
    axis.set_ylim(0, 100)
    axis.set_ylabel("level columns shown (%)")
    axis.set_title("Coverage of each level by the recorded frames")
    axis.tick_params(axis="x", rotation=90)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(args: Args) -> list[StageCoverage]:
    stages = stage_names(args.stages)
    if args.target is not None and not 0.0 <= args.target <= 1.0:
        raise ValueError(f"--target is a fraction in [0, 1], got {args.target}")
    report = measure(args.paths, stages, args.demonstrations)
    print(f"{'stage':>5}  {'coverage':>8}  {'columns':>11}  {'frames':>7}  {'sessions':>8}  frames per area")
    for row in report:
        areas = ", ".join(f"{name}: {count}" for name, count in row.frames_per_area.items())
        shown = f"{100 * row.coverage:7.1f}%" if row.level_columns else "     n/a"
        print(f"{row.stage:>5}  {shown}  {row.shown_columns:>5}/{row.level_columns:<5}  "
              f"{row.frames:>7}  {row.sessions:>8}  {areas}" + ("" if row.level_columns else
                                                                "  (no demonstrations: extent unknown)"))
    lowest = min(report, key=lambda row: row.coverage)
    print(f"lowest: {lowest.stage} {100 * lowest.coverage:.1f}%; mean {100 * np.mean([r.coverage for r in report]):.1f}%")
    if args.plot:
        plot_coverage(report, args.plot, args.target)
        print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps([row.as_dict() for row in report], indent=1) + "\n")
    if args.target is not None:
        below = [row.stage for row in report if row.coverage < args.target]
        if below:
            print(f"below the target {100 * args.target:.0f}%: {' '.join(below)}")
            for row in report:
                if row.coverage < args.target and row.missing:
                    print(f"  {row.stage} never shows " + ", ".join(
                        f"{area_name(area, area_type)} x {first * COLUMN_WIDTH}-{(last + 1) * COLUMN_WIDTH - 1}"
                        for area, area_type, first, last in row.missing))
            sys.exit(1)
    return report


if __name__ == "__main__":
    run_script(main, Args, __doc__)
