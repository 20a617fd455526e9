"""Score every sampling policy on held-out sessions: `python experiments/evaluate_policies.py --help`.

    python experiments/evaluate_policies.py          # worlds 5-8 and 1-4, 250 / 500 / 1000 px, 13 min with 2 workers

For each policy and budget, every session is replayed in order (``models.policy_replay``): the
policy chooses each frame's coordinates from what it has seen so far, the values come from the
recorded true frame and travel up as wire messages, the reconstructor (--reconstructor: the
level-agnostic ``tiles`` by default, ``tiles+atlas``, the SPT or a baseline) rebuilds the frame, and the coordinates travel down as the policy's compact
description, which the client side regenerates (checked). Scores: PSNR, SSIM, foreground PSNR
(RAM sprite boxes), uplink and downlink bytes per frame in the wire format (msgpack + zlib;
``uplink gray`` is the same samples in luma, the protocol's reference case), and milliseconds per
frame to choose the coordinates and to reconstruct. The oracle reads the true next frame: an
upper bound, labelled as such, never a candidate for the targets. Every table is given for worlds 5-8
(levels no codebook, atlas or policy was built from) and worlds 1-4 apart.

The same policies then run live in ``SGAPS-SMB-v0`` (--live-stages, --live-steps, fixed seeds)
with the run-right player on the buttons.

Writes to --output: summary.md (tables and the issue's targets, checked), summary.csv,
frames.csv (every scored frame), live.csv, psnr_vs_budget.png and grid.png (one frame of each
policy: where it sampled and what the reconstructor made of it).
"""
from __future__ import annotations

import csv
import multiprocessing
import shlex
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm.auto import tqdm

from agents.players import make_player
from agents.policies import DEFAULT_SAMPLER, POLICY_NAMES, SCHEDULES, MaskUpdateScheduler, ScheduledPolicy, make_policy
from experiments.evaluate_reconstructors import markdown_table
from models.baselines import BASELINES, make_baseline
from models.evaluation import summarize
from models.importance import ImportanceAnalyzer
from models.mae import DEFAULT_CHECKPOINTS as DEFAULT_MAE_CHECKPOINTS, MAEReconstructor
from models.policy_replay import replay_offline, run_live
from models.memory import StagePriors
from models.spt import DEFAULT_CHECKPOINT, SPTReconstructor
from models.tile_reconstructor import DEFAULT_ATLAS, DEFAULT_CODEBOOK, TileReconstructor, load_codebook
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.coords import COLOR_CHANNELS
from sgaps_env.session_file import RecordedSession, list_sessions
from sgaps_env.worlds import HELD_OUT_GROUP, TRAINING_GROUP, stage_group

#: Policies scored by default: the SPT's importance maps are left out (the SPT does not reconstruct levels it
#: was not trained on, so its maps say nothing there; ask for ``importance`` explicitly).
DEFAULT_POLICIES = ["random", "stratified", "ram", "uncertainty", "learned", "oracle"]
#: Policies that read the memory of a TileReconstructor.
MEMORY_POLICIES = ("uncertainty", "learned")
#: The columns of a replayed frame (``models.policy_replay.replay_offline``) and of a live one (``run_live``).
METRICS = ("psnr", "ssim", "foreground_psnr", "uplink_bytes", "uplink_gray_bytes", "downlink_bytes", "policy_ms",
           "reconstruct_ms")
LIVE_METRICS = ("psnr", "offline_psnr", "foreground_psnr")


PolicyName = Literal[*POLICY_NAMES]


@dataclass
class Args:
    """Options of the policy evaluation."""

    data: list[str] = field(default_factory=lambda: ["data/eval_heldout.h5", "data/eval_worlds.h5"])
    """session files with true frames: worlds 5-8 and recordings of worlds 1-4 that built nothing"""
    policies: list[PolicyName] = field(default_factory=lambda: list(DEFAULT_POLICIES))
    """policies to score"""
    scheduled: list[PolicyName] = field(default_factory=list)
    """also score these policies under the mask-update --schedule"""
    schedule: Literal[*SCHEDULES] = "interval"
    """mask-update strategy of the scheduled variants"""
    schedule_interval: int = 4
    """frames between mask updates (interval and adaptive schedules)"""
    quality_threshold: float = 0.95
    """SSIM below which the quality and adaptive schedules update the mask"""
    reconstructor: Literal["tiles", "tiles+atlas", "spt", "pixel-mae", "patch-mae", *sorted(BASELINES)] = "tiles"
    """what reconstructs the frames: ``tiles`` is the level-agnostic reconstructor; ``tiles+atlas`` the same with
    the level atlas of worlds 1-4 (it changes nothing on worlds 5-8); ``pixel-mae`` and ``patch-mae`` the seed's
    masked autoencoders (models/mae.py; the patch MAE needs whole patches: ``--scheduled patch
    --schedule-interval 2`` samples them as its clips of 2 frames)"""
    patch_checkpoint: Path = DEFAULT_MAE_CHECKPOINTS["patch"]
    """patch MAE checkpoint"""
    pixel_checkpoint: Path = DEFAULT_MAE_CHECKPOINTS["pixel"]
    """pixel MAE checkpoint"""
    codebook: Path = DEFAULT_CODEBOOK
    """tile codebook of the tiles reconstructors"""
    atlas: Path = DEFAULT_ATLAS
    """level atlas of ``tiles+atlas``"""
    checkpoint: Path = DEFAULT_CHECKPOINT
    """SPT checkpoint (the spt reconstructor and the importance maps)"""
    learned_model: Path = DEFAULT_SAMPLER
    """the learned sampler (.zip from experiments/train_sampler.py; the shipped one by default)"""
    budgets: list[int] = field(default_factory=lambda: [250, 500, 1000])
    """pixels per frame"""
    color: Literal[*sorted(COLOR_CHANNELS)] = "rgb"
    """colour of the samples (the SPT checkpoint's)"""
    max_steps: int | None = 150
    """steps per session (from its start); None for whole sessions"""
    max_sessions: int | None = 32
    """at most this many sessions, spread over the files' stages; None for all"""
    score_every: int = 5
    """score every n-th frame (every frame is reconstructed)"""
    seed: int = 0
    """seed of the policies' generators"""
    grid_step: int = 60
    """step of the first session drawn in grid.png"""
    live_stages: list[str] = field(default_factory=lambda: ["1-1", "5-1"])
    """stages played live (one episode per stage and policy)"""
    live_steps: int = 100
    """steps per live episode (0: no live runs)"""
    live_budget: int = 500
    """pixels per frame in the live runs"""
    output: Path = Path("outputs/eval_policies")
    """where the tables and plots go"""
    workers: int = 2
    """processes replaying sessions in parallel (policy_ms and reconstruct_ms are then measured side by side)"""
    progress: bool = True
    """show progress bars"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    if not args.budgets or min(args.budgets) < 1:
        raise ValueError(f"--budgets must be one or more positive pixel counts, got {args.budgets}")
    require_at_least(args, ("schedule_interval", "score_every", "live_budget", "workers"))
    require_at_least(args, ("max_steps", "max_sessions"), none_means="for all")
    if args.live_steps < 0 or args.grid_step < 0:
        raise ValueError(f"--live-steps and --grid-step must be 0 or more, got {args.live_steps} and {args.grid_step}")
    if not 0.0 <= args.quality_threshold <= 1.0:
        raise ValueError(f"--quality-threshold is an SSIM between 0 and 1, got {args.quality_threshold}")


@lru_cache(maxsize=1)
def _codebook(path: Path):
    return load_codebook(path)[0]


@lru_cache(maxsize=1)
def _atlas(path: Path):
    return StagePriors.load(path)[0]


def make_reconstructor(args: Args):
    """A fresh reconstructor of --reconstructor (one per policy: the tiles reconstructor's memory is the policy's)."""
    if args.reconstructor == "tiles":
        return TileReconstructor(_codebook(args.codebook))
    if args.reconstructor == "tiles+atlas":
        return TileReconstructor(_codebook(args.codebook), atlas=_atlas(args.atlas))
    if args.reconstructor in ("patch-mae", "pixel-mae"):
        return MAEReconstructor(args.patch_checkpoint if args.reconstructor == "patch-mae" else args.pixel_checkpoint)
    return SPTReconstructor(args.checkpoint) if args.reconstructor == "spt" else make_baseline(args.reconstructor)


def check_policies(args: Args) -> None:
    """Refuse, before any work, policies that cannot run with these options."""
    if "learned" in args.policies and not Path(args.learned_model).is_file():
        raise SystemExit(f"error: no learned sampler at {args.learned_model}: train one with "
                         "`python experiments/train_sampler.py` and pass --learned-model, or leave 'learned' out of "
                         "--policies")
    wanted = set(args.policies) | set(args.scheduled)
    if wanted & set(MEMORY_POLICIES) and not args.reconstructor.startswith("tiles"):
        raise SystemExit(f"error: the policies {sorted(wanted & set(MEMORY_POLICIES))} read the memory of the tiles "
                         f"reconstructor: use --reconstructor tiles (or tiles+atlas), or leave them out of --policies")


@lru_cache(maxsize=1)
def _analyzer(checkpoint: Path):
    return ImportanceAnalyzer(SPTReconstructor(checkpoint))


def build_policy(args: Args, name: str, scheduled: bool, budget: int):
    """``(policy, the reconstructor whose memory it reads and that rebuilds its frames)``: fresh ones."""
    reconstructor = make_reconstructor(args)
    policy = make_policy(name, budget, learned_path=args.learned_model, reconstructor=reconstructor,
                         analyzer=_analyzer(args.checkpoint) if name == "importance" else None)
    if scheduled:
        policy = ScheduledPolicy(policy, MaskUpdateScheduler(args.schedule, args.schedule_interval,
                                                             args.quality_threshold))
    return policy, reconstructor


#: What this process replays: the options and the chosen sessions (set by :func:`start_worker`).
_JOB: tuple["Args", list[RecordedSession]] | None = None


def start_worker(args: Args, sessions: list[RecordedSession]) -> None:
    global _JOB
    _JOB = (args, sessions)
    _loaded.cache_clear()
    import torch

    torch.set_num_threads(1)  # one core per worker


@lru_cache(maxsize=2)
def _loaded(index: int) -> LoadedSession:
    args, sessions = _JOB
    return load_session(sessions[index], args.max_steps)


def replay_task(task: tuple[int, str, bool, int, tuple[int, ...]]) -> tuple[list[dict], dict, str, str]:
    """One session under one policy at one budget -> ``(scored rows, kept frames, policy name, family)``."""
    budget, name, scheduled, index, keep = task
    args, _ = _JOB
    loaded = _loaded(index)
    policy, reconstructor = build_policy(args, name, scheduled, budget)
    scored, kept = replay_offline(policy, reconstructor, loaded.frames, loaded.states, loaded.masks, args.color,
                                  seed=loaded.session.seed(args.seed, budget), score_every=args.score_every,
                                  keep_steps=keep, quality_feedback=args.schedule in ("quality", "adaptive"),
                                  send_state=not args.reconstructor.endswith("-mae"))  # the MAEs read no state
    group = stage_group(loaded.session.checkpoint_key.removeprefix("smb1-"))
    for row in scored:
        row.update(policy=policy.name, family=policy.family, budget=budget, group=group,
                   checkpoint_key=loaded.session.checkpoint_key, session=loaded.session.session_id)
    return scored, kept, policy.name, policy.family


@dataclass
class LoadedSession:
    """A picked session with its first --max-steps rows read into memory (every policy replays them)."""

    session: RecordedSession
    frames: np.ndarray
    states: np.ndarray
    masks: np.ndarray


def choose_sessions(args: Args) -> list[RecordedSession]:
    """Up to --max-sessions sessions, shared evenly between the stages (file order within a stage), of the worlds
    ``args.worlds`` if the options have it (all if empty)."""
    sessions = list_sessions(args.data)
    worlds = getattr(args, "worlds", None)
    if worlds:
        sessions = [s for s in sessions if int(s.checkpoint_key.removeprefix("smb1-").split("-")[0]) in worlds]
    stages = sorted({session.checkpoint_key for session in sessions})
    if not stages:
        raise SystemExit(f"error: no sessions in {args.data}: record some with agents/collect.py --store-frames")
    limit = args.max_sessions or len(sessions)
    quota = {stage: limit // len(stages) + (index < limit % len(stages)) for index, stage in enumerate(stages)}
    chosen = []
    for session in sessions:
        if quota[session.checkpoint_key] > 0:
            quota[session.checkpoint_key] -= 1
            chosen.append(session)
    return chosen


def load_session(session: RecordedSession, max_steps: int | None) -> LoadedSession:
    rows = slice(0, max_steps)
    return LoadedSession(session, session.frames(rows), *session.states(rows))


def pick_sessions(args: Args) -> list[LoadedSession]:
    """:func:`choose_sessions`, with their first --max-steps rows read."""
    return [load_session(session, args.max_steps) for session in choose_sessions(args)]


def check_targets(overall: list[dict]) -> list[str]:
    """The issue's targets (worlds 5-8 at 500 pixels, worlds 1-4 where measured), as lines of markdown."""
    at = {(e["group"], e["policy"], e["budget"]): e for e in overall}
    lines = []
    random_500, random_1000 = at.get((HELD_OUT_GROUP, "random", 500)), at.get((HELD_OUT_GROUP, "random", 1000))
    candidates = [e for e in overall if e["group"] == HELD_OUT_GROUP and e["budget"] == 500
                  and e["family"] in ("adaptive", "learned")]
    if not random_500 or not candidates:
        return [f"(the targets need the random policy and an adaptive or learned one at 500 pixels on {HELD_OUT_GROUP})"]
    best = max(candidates, key=lambda e: e["psnr"])
    gain = best["psnr"] - random_500["psnr"]
    lines.append(f"- {HELD_OUT_GROUP}, best adaptive or learned policy at 500 px: **{best['policy']}**, {best['psnr']:.2f} dB "
                 f"against random's {random_500['psnr']:.2f} dB: **{gain:+.2f} dB** (target >= +3 dB: "
                 f"{'met' if gain >= 3 else 'NOT met'}).")
    if random_1000:
        margin = best["psnr"] - random_1000["psnr"]
        lines.append(f"- Against random at twice the budget (1000 px, {random_1000['psnr']:.2f} dB): {margin:+.2f} dB "
                     f"(target: match it: {'met' if margin >= 0 else 'NOT met'}).")
    learned = at.get((HELD_OUT_GROUP, "learned", 500))
    hand_made = [e for e in candidates if e["family"] == "adaptive"]
    if learned and hand_made:
        best_hand = max(hand_made, key=lambda e: e["psnr"])
        lines.append(f"- Learned {learned['psnr']:.2f} dB against the best hand-made policy ({best_hand['policy']}, "
                     f"{best_hand['psnr']:.2f} dB): {learned['psnr'] - best_hand['psnr']:+.2f} dB (target >= 0: "
                     f"{'met' if learned['psnr'] >= best_hand['psnr'] else 'NOT met'}).")
    ram, random_train, learned_train = (at.get((TRAINING_GROUP, name, 500)) for name in ("ram", "random", "learned"))
    if ram and random_train and learned_train:
        lead, learned_lead = ram["psnr"] - random_train["psnr"], learned_train["psnr"] - random_train["psnr"]
        lines.append(f"- {TRAINING_GROUP}: RAM-guided leads random by {lead:+.2f} dB, the learned policy by "
                     f"{learned_lead:+.2f} dB (target: the learned lead >= RAM-guided's: "
                     f"{'met' if learned_lead >= lead else 'NOT met'}).")
    timed = [e for e in overall if e["budget"] == 500 and not e["family"].startswith("oracle")]
    slowest = max(timed, key=lambda e: e["policy_ms"])
    lines.append(f"- Time to choose a frame's coordinates at 500 px: at most {slowest['policy_ms']:.1f} ms "
                 f"({slowest['policy']}; target <= 30 ms).")
    uplink = [e["uplink_gray_bytes"] for e in overall if e["budget"] == 500]
    downlink = [e["downlink_bytes"] for e in timed]
    if uplink and downlink:
        lines.append(f"- Wire at 500 px: uplink in luma with the state {min(uplink):.0f}-{max(uplink):.0f} B/frame "
                     f"(target <= 600), downlink {min(downlink):.0f}-{max(downlink):.0f} B/frame for every policy "
                     f"but the oracle (target <= 128).")
    return lines


def main(args: Args) -> dict:
    validate(args)
    check_policies(args)
    args.output.mkdir(parents=True, exist_ok=True)
    sessions = choose_sessions(args)
    rows, grid = [], {}
    long_enough = [i for i, s in enumerate(sessions) if len(s) > args.grid_step]  # the grid's frame exists
    grid_session = next((i for i in long_enough
                         if stage_group(sessions[i].checkpoint_key.removeprefix("smb1-")) == HELD_OUT_GROUP),
                        long_enough[0] if long_enough else 0)
    tasks = [(budget, name, scheduled, index, (args.grid_step,) if index == grid_session and budget == 500 else ())
             for budget in args.budgets
             for name, scheduled in [*((n, False) for n in args.policies), *((n, True) for n in args.scheduled)]
             for index in range(len(sessions))]
    progress = tqdm(total=len(tasks), desc="replays", unit="session", disable=not args.progress)
    if args.workers == 1:
        start_worker(args, sessions)
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"), initializer=start_worker,
                             initargs=(args, sessions)) if args.workers > 1 else nullcontext() as pool:
        results = pool.map(replay_task, tasks) if pool else map(replay_task, tasks)
        for scored, kept, name, _ in results:
            rows += scored
            if kept:
                grid[name] = kept[args.grid_step]
            progress.update()
    progress.close()
    overall = summarize(rows, ("group", "budget", "policy", "family"), METRICS)
    overall.sort(key=lambda e: (e["group"] != HELD_OUT_GROUP, e["budget"], -e["psnr"]))
    for entry in overall:
        reference = next((e for e in overall if e["policy"] == "random" and e["budget"] == entry["budget"]
                          and e["group"] == entry["group"]), None)
        entry["vs_random"] = entry["psnr"] - reference["psnr"] if reference else float("nan")
    at_500 = {e["policy"]: e for e in overall if e["budget"] == 500 and e["group"] == HELD_OUT_GROUP}
    live = run_live_episodes(args)

    columns = ["policy", "family", "frames", "psnr", "vs_random", "ssim", "foreground_psnr", "uplink_bytes",
               "uplink_gray_bytes", "downlink_bytes", "policy_ms", "reconstruct_ms"]
    command = shlex.join(sys.argv[1:])
    groups = [g for g in (HELD_OUT_GROUP, TRAINING_GROUP) if any(e["group"] == g for e in overall)]
    lines = [f"# Sampling policies ({args.reconstructor} reconstructor, {args.color})", "",
             f"Command: `python experiments/evaluate_policies.py {command}`", "",
             f"{len(sessions)} sessions ({', '.join(sorted({s.checkpoint_key for s in sessions}))}), "
             f"{args.max_steps} steps each, every {args.score_every}. frame scored. Bytes are per frame in the wire "
             f"format (msgpack + zlib); `uplink_gray_bytes` is the same samples in luma. The oracle reads the true "
             f"next frame: an upper bound.", "", "## Targets", "", *check_targets(overall), ""]
    for group in groups:
        for budget in args.budgets:
            lines += [f"## {group}, {budget} pixels", "",
                      markdown_table([e for e in overall if e["budget"] == budget and e["group"] == group], columns), ""]
    per_stage = summarize([r for r in rows if r["budget"] == 500], ("checkpoint_key", "policy"), METRICS)
    per_stage.sort(key=lambda e: (e["checkpoint_key"], -e["psnr"]))
    lines += ["## Per stage, 500 pixels", "", markdown_table(per_stage, ["checkpoint_key", "policy", "frames", "psnr",
                                                                       "foreground_psnr"]), ""]
    if live:
        lines += [f"## Live in SGAPS-SMB-v0 ({args.live_budget} px, run_right player, seed {args.seed})", "",
                  "`offline_psnr`: the same frames replayed offline with the same seed (`models.policy_replay`).", "",
                  markdown_table(summarize(live, ("stage", "policy"), LIVE_METRICS),
                                 ["stage", "policy", "frames", "psnr", "offline_psnr", "foreground_psnr"]), ""]
    (args.output / "summary.md").write_text("\n".join(lines))
    write_csv(args.output / "summary.csv", overall)
    write_csv(args.output / "frames.csv", rows)
    if live:
        write_csv(args.output / "live.csv", live)
    plot_budgets(overall, args.output / "psnr_vs_budget.png", args.reconstructor)
    if grid:
        plot_grid(grid, args.output / "grid.png", at_500, args.grid_step,
                  sessions[grid_session].checkpoint_key)
    print("\n".join(lines))
    print(f"wrote {args.output}/summary.md, summary.csv, frames.csv, psnr_vs_budget.png, grid.png"
          + (", live.csv" if live else ""))
    return {"overall": overall, "live": live}


def run_live_episodes(args: Args) -> list[dict]:
    """Each policy plays each --live-stages stage live in SGAPS-SMB-v0 (run_right player, --seed); the frames it
    played are then replayed offline with the same seed, and each row carries both scores (they should agree)."""
    if args.live_steps <= 0:
        return []
    rows = []
    for stage in args.live_stages:
        names = [n for n in args.policies if n != "oracle"]  # the oracle needs the future
        for name in tqdm(names, desc=f"live {stage}", unit="policy", disable=not args.progress):
            policy, reconstructor = build_policy(args, name, False, args.live_budget)
            played = []
            live = run_live(policy, reconstructor, make_player("run_right"), stage, args.seed, args.live_steps,
                            args.color, played=played)
            frames, states, masks = (np.stack(column) for column in zip(*played))
            policy, reconstructor = build_policy(args, name, False, args.live_budget)
            offline, _ = replay_offline(policy, reconstructor, frames, states, masks, args.color, seed=args.seed,
                                        with_ssim=False)
            for row, replayed in zip(live, offline):
                row.update(stage=stage, policy=name, group=stage_group(stage), offline_psnr=replayed["psnr"])
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

    groups = [g for g in (HELD_OUT_GROUP, TRAINING_GROUP) if any(e["group"] == g for e in overall)]
    figure, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.5), squeeze=False)
    for axis, group in zip(axes[0], groups):
        entries = [e for e in overall if e["group"] == group]
        for name in dict.fromkeys(e["policy"] for e in entries):
            points = sorted((e["budget"], e["psnr"]) for e in entries if e["policy"] == name)
            family = next(e["family"] for e in entries if e["policy"] == name)
            style = {"fixed": "--", "adaptive": "-", "learned": "-"}.get(family, ":")
            axis.plot(*zip(*points), style, marker="o", label=name, linewidth=2.2 if family != "fixed" else 1.2)
        axis.set(title=f"{group}: PSNR by sampling policy ({reconstructor})", xlabel="pixels per frame",
                 ylabel="PSNR (dB)", xscale="log")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_grid(grid: dict[str, dict], path: Path, scores: dict[str, dict], step: int, stage: str) -> None:
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
    figure.suptitle(f"{stage}, step {step}, 500 pixels (mean PSNR over worlds 5-8)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    run_script(main, Args, __doc__)
