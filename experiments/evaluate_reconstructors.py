"""Score every reconstructor on held-out sessions: `python experiments/evaluate_reconstructors.py --help`.

    python experiments/evaluate_reconstructors.py --data data/heldout.h5 data/unseen.h5

Each session is replayed in order; every frame's pixels are re-sampled from the true frame with
--pattern at each budget (the same pixels for every reconstructor), and each reconstruction is
scored against the truth: PSNR (full frame), SSIM (scikit-image), foreground PSNR (inside the
RAM-given sprite boxes, frames with sprites only) and milliseconds per frame. Stateless
baselines and the metrics run on every --score-every-th frame; reconstructors with a memory see
every frame. Results are grouped by worlds (1-4, on which models may train, and the held-out 5-8;
see sgaps_env.worlds) and, within them, by whether the checkpoint holds a level prior for the stage
("trained") or not ("unseen"). The split is printed with every report.

Writes to --output: summary.md (tables), summary.csv, frames.csv (every scored frame),
and psnr_vs_budget.png. `make demo` draws reconstructions side by side.
"""
from __future__ import annotations

import csv
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from models.baselines import BASELINES, make_baseline
from models.evaluation import evaluate_sessions, summarize
from models.mae import DEFAULT_CHECKPOINTS, MAEReconstructor
from models.spt import DEFAULT_CHECKPOINT, SPTReconstructor
from models.memory import StagePriors
from models.tile_reconstructor import DEFAULT_ATLAS, DEFAULT_CODEBOOK, TileReconstructor, load_codebook
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.coords import COLOR_CHANNELS, PATTERNS
from sgaps_env.sprites import key_stage
from sgaps_env.worlds import SPLIT_DESCRIPTION, stage_group


@dataclass
class Args:
    """Options of the reconstructor evaluation."""

    data: list[str] = field(default_factory=lambda: ["data/heldout.h5", "data/unseen.h5"])
    """held-out session files (every session is used)"""
    checkpoint: Path = DEFAULT_CHECKPOINT
    """SPT checkpoint"""
    codebook: Path = DEFAULT_CODEBOOK
    """tile codebook of the level-agnostic reconstructor (``tiles``)"""
    atlas: Path = DEFAULT_ATLAS
    """level atlas (worlds 1-4) that ``tiles+atlas`` uses on the levels it holds"""
    patch_checkpoint: Path = DEFAULT_CHECKPOINTS["patch"]
    """patch MAE checkpoint (``patch-mae``)"""
    pixel_checkpoint: Path = DEFAULT_CHECKPOINTS["pixel"]
    """pixel MAE checkpoint (``pixel-mae``)"""
    reconstructors: list[Literal["tiles", "tiles+atlas", "spt", "pixel-mae", "patch-mae", *BASELINES]] = field(
        default_factory=lambda: ["tiles", "tiles+atlas", "spt", "pixel-mae", *BASELINES])
    """reconstructors to score: ``tiles`` is the level-agnostic one (models/tile_reconstructor.py), from its
    samples alone; ``tiles+atlas`` the same with the level atlas on the levels the atlas holds; ``pixel-mae`` and
    ``patch-mae`` the seed's masked autoencoders (models/mae.py; the patch MAE reads whole 16x16 patches, which
    no --pattern here samples: score it with `evaluate_policies.py --reconstructor patch-mae --scheduled patch
    --schedule-interval 2` or `seed_table.py`)"""
    budgets: list[int] = field(default_factory=lambda: [250, 500, 1000])
    """pixels per frame"""
    pattern: Literal[*sorted(PATTERNS)] = "random"
    """sampling pattern"""
    color: Literal[*sorted(COLOR_CHANNELS)] = "rgb"
    """colour of the samples"""
    max_steps: int | None = 150
    """steps per session (from its start); None for whole sessions"""
    max_sessions: int | None = None
    """at most this many sessions, in file order; None for all"""
    score_every: int = 3
    """score (and run stateless baselines on) every n-th frame"""
    seed: int = 0
    """seed of the sampling patterns"""
    output: Path = Path("outputs/eval_reconstructors")
    """where the tables and plots go"""
    progress: bool = True
    """show progress bars"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    if not args.budgets or min(args.budgets) < 1:
        raise ValueError(f"--budgets must be one or more positive pixel counts, got {args.budgets}")
    if not args.reconstructors:
        raise ValueError("--reconstructors needs at least one name")
    require_at_least(args, ("score_every",))
    require_at_least(args, ("max_steps", "max_sessions"), none_means="for all")


def stage_of(checkpoint_key: str) -> str:
    """``"smb1-1-1"`` -> ``"1-1"``."""
    return checkpoint_key.split("-", 1)[1] if "-" in checkpoint_key else checkpoint_key


def group_of(stage: str, trained_stages: set[str]) -> str:
    """``"worlds 5-8, unseen stages"``: the world group of ``stage`` and whether the checkpoint has its prior."""
    try:
        worlds = stage_group(stage)
    except ValueError:  # a whole-game session
        worlds = "whole game"
    return f"{worlds}, {'trained' if stage in trained_stages else 'unseen'} stages"


def split_line(spt: SPTReconstructor | None, codebook_metadata: dict | None = None) -> str:
    """The split every report states, with what the checkpoint and the codebook themselves record."""
    line = f"Split: {SPLIT_DESCRIPTION}"
    if spt is not None:
        recorded = spt.metadata.get("split")
        line += f" (the SPT checkpoint records: {recorded})" if recorded else " (the SPT checkpoint predates split metadata)"
    if codebook_metadata is not None:
        line += f" (the tile codebook records: {codebook_metadata.get('split')})"
    return line


def markdown_table(entries: list[dict], columns: list[str]) -> str:
    def cell(value):
        return f"{value:.2f}" if isinstance(value, float) else str(value)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(entry.get(c, "")) for c in columns) + " |" for entry in entries]
    return "\n".join(lines)


def main(args: Args) -> dict:
    validate(args)
    args.output.mkdir(parents=True, exist_ok=True)
    spt = SPTReconstructor(args.checkpoint) if "spt" in args.reconstructors else None
    tiles = {"tiles", "tiles+atlas"} & set(args.reconstructors)
    codebook, codebook_metadata = load_codebook(args.codebook) if tiles else (None, None)
    atlas = StagePriors.load(args.atlas)[0] if "tiles+atlas" in args.reconstructors else None
    trained_stages = {key_stage(key) for key in (spt.priors.levels if spt else {})}
    rows = []
    for budget in args.budgets:
        reconstructors = {name: spt if name == "spt" else TileReconstructor(codebook) if name == "tiles"
                          else TileReconstructor(codebook, atlas=atlas) if name == "tiles+atlas"
                          else MAEReconstructor(args.patch_checkpoint) if name == "patch-mae"
                          else MAEReconstructor(args.pixel_checkpoint) if name == "pixel-mae"
                          else make_baseline(name) for name in args.reconstructors}
        rows += evaluate_sessions(args.data, reconstructors, budget=budget, pattern=args.pattern, color=args.color,
                                  max_steps=args.max_steps, max_sessions=args.max_sessions, seed=args.seed,
                                  score_every=args.score_every, progress=args.progress)
    for row in rows:
        row["stage"] = stage_of(row["checkpoint_key"])
        row["group"] = group_of(row["stage"], trained_stages)

    overall = summarize(rows, ("group", "budget", "reconstructor"))
    per_stage = summarize(rows, ("stage", "budget", "reconstructor"))
    overall.sort(key=lambda e: (e["group"], e["budget"], -e["psnr"]))
    per_stage.sort(key=lambda e: (e["stage"], e["budget"], -e["psnr"]))
    columns = ["reconstructor", "frames", "psnr", "ssim", "foreground_psnr", "ms"]
    lines = [f"# Reconstruction on held-out sessions ({args.pattern} pixels, {args.color})", "",
             f"Command: `python experiments/evaluate_reconstructors.py {shlex.join(sys.argv[1:])}`",
             f"Checkpoint: `{args.checkpoint}`; trained stages: {sorted(trained_stages) or 'none'}.",
             split_line(spt, codebook_metadata), ""]
    for group in sorted({e["group"] for e in overall}):
        for budget in args.budgets:
            entries = [e for e in overall if e["group"] == group and e["budget"] == budget]
            if entries:
                best_baseline = max((e for e in entries if e["reconstructor"] in BASELINES), key=lambda e: e["psnr"],
                                    default=None)
                lines += [f"## {group}, {budget} pixels", "", markdown_table(entries, columns), ""]
                for learned in ("tiles", "tiles+atlas", "spt", "pixel-mae", "patch-mae"):
                    entry = next((e for e in entries if e["reconstructor"] == learned), None)
                    if best_baseline and entry:
                        lines += [f"{learned} - best baseline ({best_baseline['reconstructor']}): "
                                  f"{entry['psnr'] - best_baseline['psnr']:+.2f} dB", ""]
    lines += ["## Per stage", "", markdown_table(per_stage, ["stage", "budget", *columns]), ""]
    (args.output / "summary.md").write_text("\n".join(lines))
    with open(args.output / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(overall[0]))
        writer.writeheader()
        writer.writerows(overall)
    with open(args.output / "frames.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_budgets(overall, args.output / "psnr_vs_budget.png")
    print("\n".join(lines))
    print(f"wrote {args.output}/summary.md, summary.csv, frames.csv, psnr_vs_budget.png")
    return {"overall": overall, "per_stage": per_stage}


def plot_budgets(overall: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({e["group"] for e in overall})
    figure, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for axis, group in zip(axes[0], groups):
        for name in sorted({e["reconstructor"] for e in overall}):
            points = sorted((e["budget"], e["psnr"]) for e in overall if e["group"] == group and e["reconstructor"] == name)
            axis.plot(*zip(*points), marker="o", label=name, linewidth=2.5 if name == "spt" else 1.2)
        axis.set(title=group, xlabel="pixels per frame", ylabel="PSNR (dB)", xscale="log")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    run_script(main, Args, __doc__)
