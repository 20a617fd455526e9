"""The seed documents' comparison table, measured: `python experiments/seed_table.py --help`.

    python experiments/seed_table.py                       # -> outputs/seed_table/ (summary.md, plot, csv)

The SGAPS design document claims Patch MAE 35 dB at 5-10% of the pixels, Pixel MAE 38 dB at 2% and
SGAPS 39.2 dB at 0.5-2%; its predecessor (HST-MAE) 38.5 dB and SSIM 0.94. Here every approach replays
the same held-out sessions, one per stage (worlds 5-8, which nothing was built from, and recordings of
worlds 1-4 that trained nothing), every frame reconstructed in session order and every --score-every-th
scored (PSNR, SSIM, foreground PSNR inside the RAM sprite boxes):

| approach | sampling | reconstructor |
|---|---|---|
| SGAPS | the uncertainty policy (or --sgaps-policy learned) | the level-agnostic tile reconstructor (state + memory) |
| Pixel MAE | random pixels, new every frame | models.mae pixel MAE (no state, no memory) |
| Patch MAE | random whole 16x16 patches, kept for a clip (tube masking) | models.mae patch MAE (no state) |
| video codecs | every frame, PyAV at low-latency settings | x264 and x265 at 4:2:0 and 4:4:4, SVT-AV1 (models.codecs) |
| full frame | every pixel, PNG | none (lossless) |

Uplink bytes are those of real wire messages (``sgaps_env.wire.FrameData``, msgpack + zlib; the MAEs'
clients send no state; the patch positions go down as a seed, so they cost the downlink a few bytes, and
the uplink nothing) and, for the codecs, the encoded packets (all frames of the session, the first
keyframe included). Each approach is measured at its design budgets and along a sweep of budgets (codecs:
a sweep of quality settings); the table at equal uplink bytes reads each approach's measured PSNR-vs-bytes
curve at the given byte counts (linear in log bytes between its two nearest measured points; '-' outside
them). PSNR is reported two ways: the mean over frames of each frame's PSNR (a frame rebuilt exactly counts
as 100 dB) and the pooled PSNR, that of the mean squared error over all scored frames. Writes summary.md (the
tables), summary.csv, frames.csv and psnr_vs_bytes.png to --output; --frames-from rebuilds them from an
earlier run's frames.csv in seconds.
"""
from __future__ import annotations

import csv
import math
import multiprocessing
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
from tqdm.auto import tqdm

from agents.policies import MaskUpdateScheduler, PatchPolicy, ScheduledPolicy, make_policy
from experiments.evaluate_policies import choose_sessions, load_session
from experiments.evaluate_reconstructors import markdown_table
from models.codecs import CODECS, DEFAULT_QUALITIES, encode_decode
from models.evaluation import summarize
from models.mae import DEFAULT_CHECKPOINTS, PATCH_PIXELS, MAEReconstructor
from models.metrics import PSNR_CAP_DB, frame_metrics
from models.policy_replay import replay_offline
from models.tile_reconstructor import DEFAULT_CODEBOOK, TileReconstructor, load_codebook
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, frame_values
from sgaps_env.worlds import HELD_OUT_GROUP, SPLIT_DESCRIPTION, TRAINING_GROUP, stage_group

FRAME_PIXELS = FRAME_HEIGHT * FRAME_WIDTH
#: The design documents' budgets: (approach, pixels per frame, as written there).
DESIGN_BUDGETS = (("Patch MAE", 12 * PATCH_PIXELS, "5%"), ("Patch MAE", 24 * PATCH_PIXELS, "10%"),
                  ("Pixel MAE", 1229, "2%"), ("SGAPS", 307, "0.5%"), ("SGAPS", 492, "0.8%"), ("SGAPS", 1229, "2%"))
#: What the design documents claim (never measured there), per approach.
CLAIMS = {
    "Full frame": "100%, 4.5 MB/s (sgaps-mae-readme.md)",
    "Patch MAE": "35 dB at 5-10%, 150 KB/s (sgaps-mae-readme.md); HST-MAE: 38.5 dB, SSIM 0.94 (hst-mae-readme.md)",
    "Pixel MAE": "38 dB at 2%, 90 KB/s (sgaps-mae-readme.md)",
    "SGAPS": "39.2 dB, SSIM 0.95 at 0.5-2%, 75 KB/s (sgaps-mae-readme.md)",
}
CODEC_LABELS = {"x264-420": "x264 4:2:0", "x264-444": "x264 4:4:4", "x265": "x265 4:2:0", "x265-444": "x265 4:4:4",
                "svt-av1": "SVT-AV1 4:2:0"}
#: Recorded sessions are one row per environment step of 4 NES frames (SGAPS-SMB-v0's default frame_skip).
STEPS_PER_SECOND = 60 / 4
METRICS = ("psnr", "mse", "ssim", "foreground_psnr", "uplink_bytes", "downlink_bytes", "ms")


@dataclass
class Args:
    """Options of the seed comparison table."""

    data: list[str] = field(default_factory=lambda: ["data/eval_heldout.h5", "data/eval_worlds.h5"])
    """session files with true frames: worlds 5-8 and recordings of worlds 1-4 that trained nothing"""
    max_sessions: int | None = 32
    """at most this many sessions, shared evenly between the files' stages (32: one per stage); None for all"""
    max_steps: int | None = 150
    """steps per session (from its start); None for whole sessions"""
    score_every: int = 5
    """score every n-th frame (every frame is reconstructed and encoded)"""
    sgaps_policy: Literal["uncertainty", "learned"] = "uncertainty"
    """SGAPS's sampling policy (both read the tile reconstructor's memory)"""
    codebook: Path = DEFAULT_CODEBOOK
    """tile codebook of SGAPS's reconstructor"""
    patch_checkpoint: Path = DEFAULT_CHECKPOINTS["patch"]
    """patch MAE checkpoint (experiments/train_reconstructor.py --model patch-mae)"""
    pixel_checkpoint: Path = DEFAULT_CHECKPOINTS["pixel"]
    """pixel MAE checkpoint (experiments/train_reconstructor.py --model pixel-mae)"""
    sgaps_budgets: list[int] = field(default_factory=lambda: [150, 3072])
    """SGAPS's pixel budgets besides its design budgets (0.5%, 0.8%, 2%)"""
    pixel_budgets: list[int] = field(default_factory=lambda: [307, 3072])
    """pixel MAE's pixel budgets besides its design budget (2%)"""
    patch_budgets: list[int] = field(default_factory=lambda: [2, 6, 48])
    """patch MAE's budgets in whole 16x16 patches besides its design budgets (12 and 24 patches: 5%, 10%)"""
    codecs: list[Literal[*sorted(CODECS)]] = field(default_factory=lambda: sorted(CODECS))
    """video codecs on the same frames"""
    codec_stride: int = 2
    """encode at every n-th of each codec's default quality settings (models.codecs.DEFAULT_QUALITIES)"""
    byte_levels: list[int] = field(default_factory=lambda: [150, 200, 300, 400, 600, 800, 1600])
    """uplink bytes per frame of the equal-bytes table"""
    seed: int = 0
    """seed of the sampling"""
    workers: int = 2
    """processes replaying sessions in parallel"""
    output: Path = Path("outputs/seed_table")
    """where the tables and the plot go"""
    frames_from: Path | None = None
    """rebuild the tables and the plot from an earlier run's frames.csv instead of replaying (seconds)"""
    progress: bool = True
    """show progress bars"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    require_at_least(args, ("score_every", "workers", "codec_stride"))
    require_at_least(args, ("max_steps", "max_sessions"), none_means="for all")
    for name in ("sgaps_budgets", "pixel_budgets"):
        if any(not 1 <= b <= FRAME_PIXELS for b in getattr(args, name)):
            raise ValueError(f"--{name.replace('_', '-')} are pixels per frame, in [1, {FRAME_PIXELS}]: "
                             f"got {getattr(args, name)}")
    if any(not 1 <= b <= FRAME_PIXELS // PATCH_PIXELS for b in args.patch_budgets):
        raise ValueError(f"--patch-budgets are whole 16x16 patches, in [1, {FRAME_PIXELS // PATCH_PIXELS}]: "
                         f"got {args.patch_budgets}")
    if not args.byte_levels or min(args.byte_levels) < 1:
        raise ValueError(f"--byte-levels must be one or more positive byte counts, got {args.byte_levels}")
    for path in (args.patch_checkpoint, args.pixel_checkpoint, args.codebook):
        if not Path(path).is_file():
            raise ValueError(f"{path} does not exist: train the MAEs with experiments/train_reconstructor.py --model "
                             "patch-mae / pixel-mae (README, 'How SGAPS compares') or pass their checkpoints")


def budgets_of(args: Args) -> dict[str, list[int]]:
    """Pixels per frame of every measured point of each approach: its design budgets and the sweep."""
    design = {name: {pixels for approach, pixels, _ in DESIGN_BUDGETS if approach == name}
              for name in ("SGAPS", "Pixel MAE", "Patch MAE")}
    return {"SGAPS": sorted(design["SGAPS"] | set(args.sgaps_budgets)),
            "Pixel MAE": sorted(design["Pixel MAE"] | set(args.pixel_budgets)),
            "Patch MAE": sorted(design["Patch MAE"] | {p * PATCH_PIXELS for p in args.patch_budgets})}


# --- one session, every approach (in a worker process) ---------------------------------------------------------

_JOB: tuple[Args, list] | None = None


def start_worker(args: Args, sessions: list) -> None:
    global _JOB
    _JOB = (args, sessions)
    import torch

    torch.set_num_threads(1)  # one core per worker


@lru_cache(maxsize=None)
def _mae(path: Path) -> MAEReconstructor:
    return MAEReconstructor(path)


@lru_cache(maxsize=1)
def _codebook(path: Path):
    return load_codebook(path)[0]


def sampled_runs(args: Args, loaded) -> list[dict]:
    """Every sampled approach at each of its budgets on one session -> scored rows."""
    frames, states, masks = loaded.frames, loaded.states, loaded.masks
    rows = []
    for approach, budgets in budgets_of(args).items():
        for budget in budgets:
            if approach == "SGAPS":
                reconstructor = TileReconstructor(_codebook(args.codebook))
                policy = make_policy(args.sgaps_policy, budget, reconstructor=reconstructor)
            elif approach == "Pixel MAE":
                reconstructor = _mae(args.pixel_checkpoint)
                policy = make_policy("random", budget)
            else:
                reconstructor = _mae(args.patch_checkpoint)
                clip = reconstructor.model.config.frames  # tube masking: a clip's frames share their patches
                policy = ScheduledPolicy(PatchPolicy(budget), MaskUpdateScheduler("interval", clip))
            started = time.perf_counter()
            scored, _ = replay_offline(policy, reconstructor, frames, states, masks, "rgb",
                                       seed=loaded.session.seed(args.seed, budget), score_every=args.score_every,
                                       send_state=approach == "SGAPS")
            ms = (time.perf_counter() - started) * 1000.0 / len(frames)
            for row in scored:
                rows.append({"approach": approach, "setting": budget, "pixels": budget, "psnr": row["psnr"],
                             "ssim": row["ssim"], "foreground_psnr": row["foreground_psnr"],
                             "uplink_bytes": row["uplink_bytes"], "downlink_bytes": row["downlink_bytes"], "ms": ms,
                             "step": row["step"]})
    return rows


def codec_runs(args: Args, loaded) -> list[dict]:
    """Every codec at each quality, and the lossless full frame (PNG), on one session -> scored rows."""
    frames, states, masks = loaded.frames, loaded.states, loaded.masks
    scored_steps = range(0, len(frames), args.score_every)
    rows = []
    for codec in args.codecs:
        for quality in DEFAULT_QUALITIES[codec][::args.codec_stride]:
            started = time.perf_counter()
            decoded, frame_bytes = encode_decode(frames, codec, quality, fps=STEPS_PER_SECOND)
            ms = (time.perf_counter() - started) * 1000.0 / len(frames)
            rate = float(np.mean(frame_bytes))  # the stream's rate: its keyframe shared by every frame
            for step in scored_steps:
                scores = frame_metrics(frame_values(decoded[step], "rgb"), frame_values(frames[step], "rgb"),
                                       states[step], masks[step])
                rows.append({"approach": CODEC_LABELS[codec], "setting": quality, "pixels": FRAME_PIXELS, **scores,
                             "uplink_bytes": rate, "downlink_bytes": 0.0, "ms": ms, "step": step})
    for step in scored_steps:
        png = cv2.imencode(".png", np.ascontiguousarray(frames[step][..., ::-1]))[1]
        rows.append({"approach": "Full frame", "setting": "png", "pixels": FRAME_PIXELS, "psnr": PSNR_CAP_DB,
                     "ssim": 1.0, "foreground_psnr": PSNR_CAP_DB, "uplink_bytes": float(len(png)),
                     "downlink_bytes": 0.0, "ms": float("nan"), "step": step})
    return rows


def session_task(index: int) -> list[dict]:
    """Every approach on session ``index`` of the chosen sessions."""
    args, sessions = _JOB
    loaded = load_session(sessions[index], args.max_steps)
    group = stage_group(loaded.session.checkpoint_key.removeprefix("smb1-"))
    rows = sampled_runs(args, loaded) + codec_runs(args, loaded)
    for row in rows:
        row.update(group=group, checkpoint_key=loaded.session.checkpoint_key, session=loaded.session.session_id)
    return rows


# --- the tables --------------------------------------------------------------------------------------------------


def curve(overall: list[dict], group: str, approach: str) -> list[dict]:
    """An approach's measured points in a group, by uplink bytes."""
    return sorted((e for e in overall if e["group"] == group and e["approach"] == approach),
                  key=lambda e: e["uplink_bytes"])


def at_bytes(points: list[dict], level: float, metric: str) -> float:
    """``metric`` at ``level`` uplink bytes, linear in log bytes between the two nearest measured points;
    NaN outside the measured range."""
    xs = np.log([p["uplink_bytes"] for p in points])
    ys = np.array([p[metric] for p in points], float)
    if len(xs) == 0 or not xs[0] <= math.log(level) <= xs[-1] or not np.isfinite(ys).all():
        return float("nan")
    return float(np.interp(math.log(level), xs, ys))


def design_rows(overall: list[dict], groups: list[str]) -> list[dict]:
    """The design-budget table: one row per approach and budget, both groups side by side."""
    table = []
    wanted = [*((approach, pixels, share) for approach, pixels, share in DESIGN_BUDGETS), ("Full frame", "png", "100%")]
    for approach, setting, share in wanted:
        row = {"approach": approach, "pixels": f"{setting} ({share})" if approach != "Full frame" else "all (100%)"}
        for group in groups:
            entry = next((e for e in overall if e["group"] == group and e["approach"] == approach
                          and e["setting"] == setting), None)
            if entry is None:
                continue
            tag = "5-8" if group == HELD_OUT_GROUP else "1-4"
            lossless = approach == "Full frame"
            row.update({f"PSNR {tag}": "lossless" if lossless else entry["psnr"],
                        f"pooled PSNR {tag}": "lossless" if lossless else entry["pooled_psnr"],
                        f"SSIM {tag}": entry["ssim"],
                        f"fg PSNR {tag}": "lossless" if lossless else entry["foreground_psnr"],
                        f"uplink B {tag}": entry["uplink_bytes"]})
        row["claimed (design documents, never measured)"] = CLAIMS[approach]
        table.append(row)
    return table


def equal_byte_rows(overall: list[dict], groups: list[str], levels: list[int], metric: str = "psnr") -> list[dict]:
    """``metric`` of every approach at each byte level, per group."""
    approaches = ["SGAPS", "Pixel MAE", "Patch MAE", *CODEC_LABELS.values()]
    table = []
    for group in groups:
        for level in levels:
            row = {"worlds": group, "uplink B/frame": level}
            for approach in approaches:
                points = curve(overall, group, approach)
                if points:
                    row[approach] = at_bytes(points, level, metric)
            table.append(row)
    return table


def format_cell(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.0f}" if value >= 100 else f"{value:.2f}"
    return str(value)


def table_markdown(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(row.get(c, float("nan"))) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def plot(overall: list[dict], groups: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"SGAPS": dict(color="C3", marker="o", linewidth=2.5), "Pixel MAE": dict(color="C1", marker="s"),
              "Patch MAE": dict(color="C2", marker="^"), "x264 4:2:0": dict(color="0.2", linestyle="--", marker="."),
              "x264 4:4:4": dict(color="0.45", linestyle="--", marker="."),
              "x265 4:2:0": dict(color="C0", linestyle=":", marker="."),
              "x265 4:4:4": dict(color="C9", linestyle=":", marker="."),
              "SVT-AV1 4:2:0": dict(color="C4", linestyle="-.", marker=".")}
    metrics = {"psnr": "mean PSNR per frame (dB)", "pooled_psnr": "PSNR of the mean squared error (dB)"}
    figure, axes = plt.subplots(len(metrics), len(groups), figsize=(7 * len(groups), 4.6 * len(metrics)),
                                squeeze=False, sharey="row")
    for row, (metric, label) in enumerate(metrics.items()):
        for axis, group in zip(axes[row], groups):
            for approach, style in styles.items():
                points = curve(overall, group, approach)
                if points:
                    axis.plot([p["uplink_bytes"] for p in points], [p[metric] for p in points], label=approach,
                              **style)
            for approach, pixels, share in DESIGN_BUDGETS:
                entry = next((e for e in overall if e["group"] == group and e["approach"] == approach
                              and e["setting"] == pixels), None)
                if entry:
                    axis.annotate(share, (entry["uplink_bytes"], entry[metric]), textcoords="offset points",
                                  xytext=(4, -10), fontsize=7, color=styles[approach]["color"])
            full = next((e for e in overall if e["group"] == group and e["approach"] == "Full frame"), None)
            if full:
                axis.axvline(full["uplink_bytes"], color="0.7", linewidth=1)
                axis.text(full["uplink_bytes"], 12, " full frame (PNG)", fontsize=7, rotation=90, color="0.5")
            title = group + (" (held out)" if group == HELD_OUT_GROUP else " (training worlds, other recordings)")
            axis.set(title=title, xlabel="uplink bytes per frame", ylabel=label, xscale="log")
            axis.grid(alpha=0.3, which="both")
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)


def replay_all(args: Args) -> list[dict]:
    """Every approach on every chosen session (in --workers processes) -> the scored frames."""
    sessions = choose_sessions(args)
    rows = []
    progress = tqdm(total=len(sessions), desc="sessions", unit="session", disable=not args.progress)
    if args.workers == 1:
        start_worker(args, sessions)
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"), initializer=start_worker,
                             initargs=(args, sessions)) if args.workers > 1 else nullcontext() as pool:
        tasks = range(len(sessions))
        for result in (pool.map(session_task, tasks) if pool else map(session_task, tasks)):
            rows += result
            progress.update()
    progress.close()
    return rows


def read_frames(path: Path) -> list[dict]:
    """The scored frames of an earlier run (its frames.csv), numbers as numbers."""
    if not Path(path).is_file():
        raise ValueError(f"--frames-from {path} does not exist: pass the frames.csv an earlier run wrote")
    text = {"approach", "group", "checkpoint_key", "session"}
    with open(path, newline="") as handle:
        rows = [{key: value if key in text else int(value) if value.isdigit() else value if key == "setting"
                 else float(value) for key, value in row.items() if key != "mse"} for row in csv.DictReader(handle)]
    if not rows or not {"approach", "setting", "group", "psnr", "uplink_bytes"} <= set(rows[0]):
        raise ValueError(f"{path} is not a frames.csv written by experiments/seed_table.py")
    return rows


def main(args: Args) -> dict:
    args.output.mkdir(parents=True, exist_ok=True)
    if args.frames_from is not None:
        rows = read_frames(args.frames_from)
    else:
        validate(args)
        rows = replay_all(args)
    for row in rows:  # the frame's mean squared error, back from its PSNR (exact below the 100 dB cap)
        row["mse"] = 10.0 ** (-float(row["psnr"]) / 10.0)
    overall = summarize(rows, ("group", "approach", "setting"), METRICS)
    for entry in overall:
        entry["pooled_psnr"] = -10.0 * math.log10(entry.pop("mse"))
    groups = [g for g in (HELD_OUT_GROUP, TRAINING_GROUP) if any(e["group"] == g for e in overall)]
    per_group = {g: sorted({(r["checkpoint_key"], r["session"]) for r in rows if r["group"] == g}) for g in groups}
    lines = ["# The seed documents' comparison table, measured", "",
             f"Command: `python experiments/seed_table.py {shlex.join(sys.argv[1:])}`", "",
             f"{SPLIT_DESCRIPTION}. Sessions: " + "; ".join(f"{g}: {len(s)}" for g, s in per_group.items())
             + f"; the first {args.max_steps} steps of each, every {args.score_every}. frame scored. SGAPS samples "
             f"with the {args.sgaps_policy} policy. Uplink bytes per frame: wire messages (msgpack + zlib) for the "
             "sampled approaches, encoded packets for the codecs, PNG for the full frame. PSNR is the mean of the "
             "frames' PSNRs (a frame rebuilt exactly counts as 100 dB); pooled PSNR is the PSNR of the mean squared "
             "error over all scored frames, which a few exact frames cannot lift.", "",
             "## At the design documents' budgets", "", table_markdown(design_rows(overall, groups)), "",
             "## At equal uplink bytes: mean PSNR per frame (dB; read off each measured curve, '-' outside it)", "",
             table_markdown(equal_byte_rows(overall, groups, args.byte_levels)), "",
             "## At equal uplink bytes: pooled PSNR (dB)", "",
             table_markdown(equal_byte_rows(overall, groups, args.byte_levels, "pooled_psnr")), "",
             "## Every measured point", "",
             markdown_table(sorted(overall, key=lambda e: (e["group"], e["approach"], e["uplink_bytes"])),
                            ["group", "approach", "setting", "frames", "uplink_bytes", "downlink_bytes", "psnr",
                             "pooled_psnr", "ssim", "foreground_psnr", "ms"]), ""]
    (args.output / "summary.md").write_text("\n".join(lines))
    write_csv(args.output / "summary.csv", overall)
    write_csv(args.output / "frames.csv", rows)
    plot(overall, groups, args.output / "psnr_vs_bytes.png")
    print("\n".join(lines))
    print(f"wrote {args.output}/summary.md, summary.csv, frames.csv, psnr_vs_bytes.png")
    return {"overall": overall}


if __name__ == "__main__":
    run_script(main, Args, __doc__)
