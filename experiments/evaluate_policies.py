"""Score every sampling policy on held-out sessions: `python experiments/evaluate_policies.py --help`.

    python experiments/evaluate_policies.py --data data/heldout.h5

For each policy and budget, every session is replayed in order (``models.policy_replay``): the
policy chooses each frame's coordinates from what it has seen so far, the values come from the
recorded true frame and travel up as wire messages, the reconstructor (--reconstructor: the SPT
or a baseline) rebuilds the frame, and the coordinates travel down as the policy's compact
description, which the client side regenerates (checked). Scores: PSNR, SSIM, foreground PSNR
(RAM sprite boxes), uplink and downlink bytes per frame in the wire format (msgpack + zlib;
``uplink gray`` is the same samples in luma, the protocol's reference case), and milliseconds per
frame to choose the coordinates and to reconstruct. The oracle reads the true next frame: an
upper bound, labelled as such, never a candidate for the targets.

The same policies then run live in ``SGAPS-SMB-v0`` (--live-stages, --live-steps, fixed seeds)
with the run-right player on the buttons.

Writes to --output: summary.md (tables and the issue's targets, checked), summary.csv,
frames.csv (every scored frame), live.csv, psnr_vs_budget.png and grid.png (one frame of each
policy: where it sampled and what the reconstructor made of it).
"""
from __future__ import annotations

import csv
import shlex
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm.auto import tqdm

from agents.players import make_player
from agents.policies import POLICY_NAMES, SCHEDULES, MaskUpdateScheduler, ScheduledPolicy, make_policy
from experiments.evaluate_reconstructors import markdown_table
from models.baselines import BASELINES, make_baseline
from models.evaluation import summarize
from models.importance import ImportanceAnalyzer
from models.policy_replay import replay_offline, run_live
from models.spt import DEFAULT_CHECKPOINT, SPTReconstructor
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.coords import COLOR_CHANNELS
from sgaps_env.session_file import RecordedSession, list_sessions

#: Where `python experiments/train_sampler.py` (default --output runs/sampler) writes the learned sampler.
DEFAULT_SAMPLER = Path("runs/sampler/final_model.zip")
#: The columns of a replayed frame (``models.policy_replay.replay_offline``) and of a live one (``run_live``).
METRICS = ("psnr", "ssim", "foreground_psnr", "uplink_bytes", "uplink_gray_bytes", "downlink_bytes", "policy_ms",
           "reconstruct_ms")
LIVE_METRICS = ("psnr", "ssim", "foreground_psnr")


PolicyName = Literal[*POLICY_NAMES]


@dataclass
class Args:
    """Options of the policy evaluation."""

    data: list[str] = field(default_factory=lambda: ["data/heldout.h5"])
    """held-out session files with true frames"""
    policies: list[PolicyName] = field(default_factory=lambda: list(POLICY_NAMES))
    """policies to score"""
    scheduled: list[PolicyName] = field(default_factory=lambda: ["importance"])
    """also score these policies under the mask-update --schedule"""
    schedule: Literal[*SCHEDULES] = "interval"
    """mask-update strategy of the scheduled variants"""
    schedule_interval: int = 4
    """frames between mask updates (interval and adaptive schedules)"""
    quality_threshold: float = 0.95
    """SSIM below which the quality and adaptive schedules update the mask"""
    reconstructor: Literal["spt", *sorted(BASELINES)] = "spt"
    """what reconstructs the frames"""
    checkpoint: Path = DEFAULT_CHECKPOINT
    """SPT checkpoint (reconstructor and importance maps)"""
    learned_model: Path = DEFAULT_SAMPLER
    """the learned sampler (.zip from experiments/train_sampler.py)"""
    budgets: list[int] = field(default_factory=lambda: [250, 500, 1000])
    """pixels per frame"""
    color: Literal[*sorted(COLOR_CHANNELS)] = "rgb"
    """colour of the samples (the SPT checkpoint's)"""
    max_steps: int | None = 100
    """steps per session (from its start); None for whole sessions"""
    max_sessions: int | None = 6
    """at most this many sessions, spread over the files' stages; None for all"""
    score_every: int = 2
    """score every n-th frame (every frame is reconstructed)"""
    seed: int = 0
    """seed of the policies' generators"""
    grid_step: int = 60
    """step of the first session drawn in grid.png"""
    live_stages: list[str] = field(default_factory=lambda: ["1-1"])
    """stages played live (one episode per stage and policy)"""
    live_steps: int = 100
    """steps per live episode (0: no live runs)"""
    live_budget: int = 500
    """pixels per frame in the live runs"""
    output: Path = Path("outputs/eval_policies")
    """where the tables and plots go"""
    progress: bool = True
    """show progress bars"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    if not args.budgets or min(args.budgets) < 1:
        raise ValueError(f"--budgets must be one or more positive pixel counts, got {args.budgets}")
    require_at_least(args, ("schedule_interval", "score_every", "live_budget"))
    require_at_least(args, ("max_steps", "max_sessions"), none_means="for all")
    if args.live_steps < 0 or args.grid_step < 0:
        raise ValueError(f"--live-steps and --grid-step must be 0 or more, got {args.live_steps} and {args.grid_step}")
    if not 0.0 <= args.quality_threshold <= 1.0:
        raise ValueError(f"--quality-threshold is an SSIM between 0 and 1, got {args.quality_threshold}")


def make_reconstructor(args: Args):
    return SPTReconstructor(args.checkpoint) if args.reconstructor == "spt" else make_baseline(args.reconstructor)


def build_policies(args: Args, budget: int, analyzer) -> list:
    """The policies of one budget, the scheduled variants after their plain ones."""
    if "learned" in args.policies and not Path(args.learned_model).is_file():
        raise SystemExit(f"error: no learned sampler at {args.learned_model}: train one with "
                         "`python experiments/train_sampler.py` and pass --learned-model, or leave 'learned' out of "
                         "--policies")
    def one(name):
        return make_policy(name, budget, learned_path=args.learned_model,
                           analyzer=analyzer if name == "importance" else None)
    policies = []
    for name in args.policies:
        if name == "learned" and learned_budget(args.learned_model) != budget:
            print(f"note: the learned sampler was trained at {learned_budget(args.learned_model)} pixels per frame (its "
                  f"observation has that many rows); it is left out at {budget}")
            continue
        policies.append(one(name))
    scheduler = MaskUpdateScheduler(args.schedule, args.schedule_interval, args.quality_threshold)
    policies += [ScheduledPolicy(one(name), scheduler) for name in args.scheduled]
    return policies


@lru_cache(maxsize=4)
def learned_budget(path: Path) -> int:
    """The pixels per frame a learned sampler was trained with (the rows of its observation)."""
    from stable_baselines3.common.save_util import load_from_zip_file

    data, _, _ = load_from_zip_file(path, device="cpu")
    return int(data["observation_space"]["pixels"].shape[0])


@dataclass
class LoadedSession:
    """A picked session with its first --max-steps rows read into memory (every policy replays them)."""

    session: RecordedSession
    frames: np.ndarray
    states: np.ndarray
    masks: np.ndarray


def pick_sessions(args: Args) -> list[LoadedSession]:
    """Up to --max-sessions sessions, shared evenly between the stages (file order within a stage); only
    the picked ones are read."""
    sessions = list_sessions(args.data)
    stages = sorted({session.checkpoint_key for session in sessions})
    if not stages:
        raise SystemExit(f"error: no sessions in {args.data}: record some with agents/collect.py --store-frames")
    limit = args.max_sessions or len(sessions)
    quota = {stage: limit // len(stages) + (index < limit % len(stages)) for index, stage in enumerate(stages)}
    picked = []
    rows = slice(0, args.max_steps)
    for session in sessions:
        if quota[session.checkpoint_key] > 0:
            quota[session.checkpoint_key] -= 1
            picked.append(LoadedSession(session, session.frames(rows), *session.states(rows)))
    return picked


def check_targets(overall: list[dict]) -> list[str]:
    """The issue's targets at 500 pixels, as lines of markdown."""
    at = {(e["policy"], e["budget"]): e for e in overall}
    random_500, random_1000 = at.get(("random", 500)), at.get(("random", 1000))
    candidates = [e for e in overall if e["budget"] == 500 and e["family"] in ("adaptive", "learned")]
    if not random_500 or not candidates:
        return ["(the targets need the random policy and an adaptive or learned one at 500 pixels)"]
    best = max(candidates, key=lambda e: e["psnr"])
    gain = best["psnr"] - random_500["psnr"]
    lines = [f"- Best adaptive or learned policy at 500 px: **{best['policy']}**, {best['psnr']:.2f} dB against random's "
             f"{random_500['psnr']:.2f} dB: **{gain:+.2f} dB** (target >= +3 dB: {'met' if gain >= 3 else 'NOT met'})."]
    if random_1000:
        margin = best["psnr"] - random_1000["psnr"]
        lines.append(f"- Against random at twice the budget (1000 px, {random_1000['psnr']:.2f} dB): {margin:+.2f} dB "
                     f"(target: match it: {'met' if margin >= 0 else 'NOT met'}).")
    learned, ram = at.get(("learned", 500)), at.get(("ram", 500))
    if learned and ram:
        lines.append(f"- Learned {learned['psnr']:.2f} dB against RAM-guided {ram['psnr']:.2f} dB: "
                     f"{learned['psnr'] - ram['psnr']:+.2f} dB (target: learned beats RAM-guided: "
                     f"{'met' if learned['psnr'] > ram['psnr'] else 'NOT met'}).")
    uplink = [e["uplink_gray_bytes"] for e in overall if e["budget"] == 500]
    downlink = [e["downlink_bytes"] for e in overall if e["budget"] == 500 and not e["family"].startswith("oracle")]
    if uplink and downlink:
        lines.append(f"- Wire at 500 px: uplink in luma with the state {min(uplink):.0f}-{max(uplink):.0f} B/frame "
                     f"(target <= 600), downlink {min(downlink):.0f}-{max(downlink):.0f} B/frame for every policy "
                     f"but the oracle (target <= 128).")
    return lines


def main(args: Args) -> dict:
    validate(args)
    args.output.mkdir(parents=True, exist_ok=True)
    sessions = pick_sessions(args)
    reconstructor = make_reconstructor(args)
    needs_analyzer = "importance" in args.policies or "importance" in args.scheduled
    analyzer = ImportanceAnalyzer(SPTReconstructor(args.checkpoint)) if needs_analyzer else None
    rows, grid = [], {}
    for budget in args.budgets:
        for policy in build_policies(args, budget, analyzer):
            for index, loaded in enumerate(
                    tqdm(sessions, desc=f"{policy.name} @{budget}px", unit="session", disable=not args.progress)):
                keep = (args.grid_step,) if index == 0 and budget == 500 else ()
                scored, kept = replay_offline(policy, reconstructor, loaded.frames, loaded.states, loaded.masks,
                                              args.color, seed=loaded.session.seed(args.seed, budget),
                                              score_every=args.score_every, keep_steps=keep,
                                              quality_feedback=args.schedule in ("quality", "adaptive"))
                for row in scored:
                    row.update(policy=policy.name, family=policy.family, budget=budget,
                               checkpoint_key=loaded.session.checkpoint_key, session=loaded.session.session_id)
                rows += scored
                if kept:
                    grid[policy.name] = kept[args.grid_step]
    overall = summarize(rows, ("budget", "policy", "family"), METRICS)
    overall.sort(key=lambda e: (e["budget"], -e["psnr"]))
    at_500 = {e["policy"]: e for e in overall if e["budget"] == 500}
    for entry in overall:
        reference = next((e for e in overall if e["policy"] == "random" and e["budget"] == entry["budget"]), None)
        entry["vs_random"] = entry["psnr"] - reference["psnr"] if reference else float("nan")
    live = run_live_episodes(args)

    columns = ["policy", "family", "frames", "psnr", "vs_random", "ssim", "foreground_psnr", "uplink_bytes",
               "uplink_gray_bytes", "downlink_bytes", "policy_ms", "reconstruct_ms"]
    command = shlex.join(sys.argv[1:])
    lines = [f"# Sampling policies on held-out sessions ({args.reconstructor} reconstructor, {args.color})", "",
             f"Command: `python experiments/evaluate_policies.py {command}`", "",
             f"{len(sessions)} sessions ({', '.join(sorted({s.session.checkpoint_key for s in sessions}))}), {args.max_steps} steps each, "
             f"every {args.score_every}. frame scored. Bytes are per frame in the wire format (msgpack + zlib); "
             f"`uplink_gray_bytes` is the same samples in luma. The oracle reads the true next frame: an upper bound.",
             "", "## Targets", "", *check_targets(overall), ""]
    for budget in args.budgets:
        lines += [f"## {budget} pixels", "", markdown_table([e for e in overall if e["budget"] == budget], columns), ""]
    per_stage = summarize([r for r in rows if r["budget"] == 500], ("checkpoint_key", "policy"), METRICS)
    per_stage.sort(key=lambda e: (e["checkpoint_key"], -e["psnr"]))
    lines += ["## Per stage, 500 pixels", "", markdown_table(per_stage, ["checkpoint_key", "policy", "frames", "psnr",
                                                                       "foreground_psnr"]), ""]
    if live:
        lines += [f"## Live in SGAPS-SMB-v0 ({args.live_budget} px, run_right player, seed {args.seed})", "",
                  markdown_table(summarize(live, ("stage", "policy"), LIVE_METRICS), ["stage", "policy", "frames", "psnr",
                                                                             "foreground_psnr"]), ""]
    (args.output / "summary.md").write_text("\n".join(lines))
    write_csv(args.output / "summary.csv", overall)
    write_csv(args.output / "frames.csv", rows)
    if live:
        write_csv(args.output / "live.csv", live)
    plot_budgets(overall, args.output / "psnr_vs_budget.png", args.reconstructor)
    if grid:
        plot_grid(grid, args.output / "grid.png", at_500, args.grid_step)
    print("\n".join(lines))
    print(f"wrote {args.output}/summary.md, summary.csv, frames.csv, psnr_vs_budget.png, grid.png"
          + (", live.csv" if live else ""))
    return {"overall": overall, "live": live}


def run_live_episodes(args: Args) -> list[dict]:
    if args.live_steps <= 0:
        return []
    rows = []
    analyzer = None
    for stage in args.live_stages:
        names = [n for n in args.policies if n != "oracle"]  # the oracle needs the future
        for name in tqdm(names, desc=f"live {stage}", unit="policy", disable=not args.progress):
            if name == "importance":
                analyzer = analyzer or ImportanceAnalyzer(SPTReconstructor(args.checkpoint))
            policy = make_policy(name, args.live_budget, learned_path=args.learned_model,
                                 analyzer=analyzer if name == "importance" else None)
            for row in run_live(policy, make_reconstructor(args), make_player("run_right"), stage, args.seed,
                                args.live_steps, args.color):
                row.update(stage=stage, policy=name)
                rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_budgets(overall: list[dict], path: Path, reconstructor: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(e["policy"] for e in overall):
        points = sorted((e["budget"], e["psnr"]) for e in overall if e["policy"] == name)
        family = next(e["family"] for e in overall if e["policy"] == name)
        style = {"fixed": "--", "adaptive": "-", "learned": "-"}.get(family, ":")
        axis.plot(*zip(*points), style, marker="o", label=name, linewidth=2.2 if family != "fixed" else 1.2)
    axis.set(title=f"PSNR by sampling policy ({reconstructor} reconstructor)", xlabel="pixels per frame",
             ylabel="PSNR (dB)", xscale="log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_grid(grid: dict[str, dict], path: Path, scores: dict[str, dict], step: int) -> None:
    """One row per policy: the truth with the sampled pixels marked, and the reconstruction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sgaps_env.coords import uv_to_pixel

    names = list(grid)
    figure, axes = plt.subplots(len(names), 2, figsize=(6.4, 2.7 * len(names)), squeeze=False)
    for (left, right), name in zip(axes, names):
        kept = grid[name]
        truth = np.clip(kept["truth"], 0, 1)
        rows, cols = uv_to_pixel(kept["coords"])
        shown = truth * 0.35
        shown[rows, cols] = [1.0, 0.1, 0.1] if shown.shape[-1] == 3 else 1.0
        left.imshow(shown.squeeze(), cmap="gray" if truth.shape[-1] == 1 else None)
        right.imshow(np.clip(kept["reconstruction"], 0, 1).squeeze(), cmap="gray" if truth.shape[-1] == 1 else None)
        score = scores.get(name)
        left.set_title(f"{name}: where it sampled", fontsize=8)
        right.set_title(f"reconstruction ({score['psnr']:.1f} dB mean)" if score else "reconstruction", fontsize=8)
        for axis in (left, right):
            axis.axis("off")
    figure.suptitle(f"step {step} of the first session, 500 pixels", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    run_script(main, Args, __doc__)
