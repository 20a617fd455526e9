"""Score every sampling policy on held-out sessions: `python experiments/evaluate_policies.py --help`.

    python experiments/evaluate_policies.py --data data/heldout.h5

For each policy and budget, every session is replayed in order (``agents.policy_replay``): the
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
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from agents.players import make_player  # noqa: E402
from agents.policies import (FAMILIES, POLICY_NAMES, MaskUpdateScheduler, ScheduledPolicy,  # noqa: E402
                             make_policy)
from agents.policy_replay import replay_session, run_live  # noqa: E402
from experiments.cli import arg, parse_args  # noqa: E402
from experiments.evaluate_reconstructors import markdown_table  # noqa: E402
from models.baselines import BASELINES, make_baseline  # noqa: E402
from models.dataset import session_entries, session_seed  # noqa: E402
from models.evaluation import read_session, summarize  # noqa: E402
from models.importance import ImportanceAnalyzer  # noqa: E402
from models.spt import DEFAULT_CHECKPOINT, SPTReconstructor  # noqa: E402

#: Where `python experiments/train_sampler.py` (default --output runs/sampler) writes the learned sampler.
DEFAULT_SAMPLER = Path("runs/sampler/final_model.zip")
#: The columns of a replayed frame (``agents.policy_replay.replay_session``) and of a live one (``run_live``).
METRICS = ("psnr", "ssim", "foreground_psnr", "uplink_bytes", "uplink_gray_bytes", "downlink_bytes", "policy_ms",
           "reconstruct_ms")
LIVE_METRICS = ("psnr", "ssim", "foreground_psnr")


@dataclass
class Args:
    data: list[str] = arg(["data/heldout.h5"], "held-out session files with true frames")
    policies: list[str] = arg(list(POLICY_NAMES), "policies to score", choices=list(POLICY_NAMES))
    scheduled: list[str] = arg(["importance"], "also score these policies under the mask-update --schedule",
                               choices=list(POLICY_NAMES))
    schedule: str = arg("interval", "mask-update strategy of the scheduled variants",
                        choices=["fixed", "interval", "quality", "adaptive"])
    schedule_interval: int = arg(4, "frames between mask updates (interval and adaptive schedules)")
    quality_threshold: float = arg(0.95, "SSIM below which the quality and adaptive schedules update the mask")
    reconstructor: str = arg("spt", "what reconstructs the frames", choices=["spt", *BASELINES])
    checkpoint: Path = arg(DEFAULT_CHECKPOINT, "SPT checkpoint (reconstructor and importance maps)")
    learned_model: Path = arg(DEFAULT_SAMPLER, "the learned sampler (.zip from experiments/train_sampler.py)")
    budgets: list[int] = arg([250, 500, 1000], "pixels per frame")
    color: str = arg("rgb", "colour of the samples (the SPT checkpoint's)", choices=["rgb", "gray"])
    max_steps: int | None = arg(100, "steps per session (from its start); omit for whole sessions")
    max_sessions: int | None = arg(6, "at most this many sessions, spread over the files' stages; omit for all")
    score_every: int = arg(2, "score every n-th frame (every frame is reconstructed)")
    seed: int = arg(0, "seed of the policies' generators")
    grid_step: int = arg(60, "step of the first session drawn in grid.png")
    live_stages: list[str] = arg(["1-1"], "stages played live (one episode per stage and policy)")
    live_steps: int = arg(100, "steps per live episode (0: no live runs)")
    live_budget: int = arg(500, "pixels per frame in the live runs")
    output: Path = arg(Path("outputs/eval_policies"), "where the tables and plots go")
    progress: bool = arg(True, "show progress bars")


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


def pick_sessions(args: Args) -> list:
    """Up to --max-sessions sessions, shared evenly between the stages (file order within a stage); only
    the picked ones are read."""
    entries = session_entries(args.data, None)
    stages = sorted({entry.checkpoint_key for _, entry in entries})
    if not stages:
        raise SystemExit(f"error: no sessions in {args.data}: record some with agents/collect.py --store-frames")
    limit = args.max_sessions or len(entries)
    quota = {stage: limit // len(stages) + (index < limit % len(stages)) for index, stage in enumerate(stages)}
    picked = []
    for session_file, entry in entries:
        if quota[entry.checkpoint_key] > 0:
            quota[entry.checkpoint_key] -= 1
            picked.append(read_session(session_file, entry, args.max_steps))
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


def main(argv=None) -> dict:
    args = parse_args(Args, __doc__, argv)
    args.output.mkdir(parents=True, exist_ok=True)
    sessions = pick_sessions(args)
    reconstructor = make_reconstructor(args)
    needs_analyzer = "importance" in args.policies or "importance" in args.scheduled
    analyzer = ImportanceAnalyzer(SPTReconstructor(args.checkpoint)) if needs_analyzer else None
    rows, grid = [], {}
    for budget in args.budgets:
        for policy in build_policies(args, budget, analyzer):
            for index, (key, session_id, frames, states, masks) in enumerate(
                    tqdm(sessions, desc=f"{policy.name} @{budget}px", unit="session", disable=not args.progress)):
                keep = (args.grid_step,) if index == 0 and budget == 500 else ()
                scored, kept = replay_session(policy, reconstructor, frames, states, masks, args.color,
                                              seed=session_seed(key, session_id, args.seed, budget),
                                              score_every=args.score_every, keep_steps=keep,
                                              quality_feedback=args.schedule in ("quality", "adaptive"))
                for row in scored:
                    row.update(policy=policy.name, family=policy.family, budget=budget, checkpoint_key=key,
                               session=session_id)
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
    command = " ".join(sys.argv[1:] if argv is None else argv)
    lines = [f"# Sampling policies on held-out sessions ({args.reconstructor} reconstructor, {args.color})", "",
             f"Command: `python experiments/evaluate_policies.py {command}`", "",
             f"{len(sessions)} sessions ({', '.join(sorted({s[0] for s in sessions}))}), {args.max_steps} steps each, "
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
    main()
