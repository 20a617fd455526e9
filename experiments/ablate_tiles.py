"""What each part of the level-agnostic reconstructor buys: `python experiments/ablate_tiles.py --help`.

    python experiments/ablate_tiles.py --data data/eval_heldout.h5

Every session of --data (by default the held-out worlds 5-8) is replayed with --budget random pixels per
frame, the same pixels for every variant of ``models.tile_reconstructor.TileReconstructor``, and each
--score-every-th frame is scored (PSNR, foreground PSNR inside the RAM sprite boxes, ms per frame). Variants,
each the full reconstructor with one part taken away:

- ``full``: the shipped codebook, the most probable block, session-adapted prior (the defaults);
- ``posterior mean of 8``: the posterior mean of the 8 most probable blocks instead of the most probable;
- ``no session prior``: the block prior is the frequency on worlds 1-4 alone (session_weight = 0);
- ``no block pairs``: a candidate gains nothing from having followed the neighbouring block in this session
  (pair_weight = 0);
- ``tiles only``: no 16x16 blocks, every 8x8 tile named on its own;
- ``no sprites``: the background shows through the sprites, only their samples drawn;
- ``sprites without their samples``: every sprite drawn as its pose's most frequent appearance, instead of the
  appearance that best explains the samples in its window (``sprite_miss_probability = 1``);
- ``sprites blind to their motion``, ``sprites blind to the moving direction``: a sprite appearance's prior
  without that part of its context (:func:`blind_to_motion`, :func:`blind_to_direction`); ``sprites blind to
  phase, direction and motion``: its prior unconditioned;
- ``fire bars not drawn``: the codebook without its fire-bar appearances;
- ``no status digits``: the status bar's tiles are not keyed by the state's digits;
- ``blind to the palette rotation``: the codebook's blinking pixels hold one fixed colour (the rotation's
  most frequent), as a codebook counted without following the rotation would;
- ``stray pixels tolerated``: ``stray_probability = 1e-4`` instead of 0: a candidate may miss one sample,
  at that probability, instead of having to explain every sample (one stray pixel forgotten only when no
  block matches);
- ``hold`` and ``linear``: the non-learned baselines, for scale.
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from models.baselines import make_baseline
from models.evaluation import evaluate_sessions, summarize
from models.tile_reconstructor import DEFAULT_CODEBOOK, ROTATING, TileReconstructor, load_codebook
from models.tile_vocabulary import colour_codes
from sgaps_env.sprites import ANIMATION_PHASES, MOTIONS, MOVING_DIRECTIONS, ROTATION_COLOURS
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.worlds import SPLIT_DESCRIPTION


@dataclass
class Args:
    """Options of the ablation."""

    data: list[str] = field(default_factory=lambda: ["data/eval_heldout.h5"])
    """session files recorded with --store-frames (held-out worlds 5-8 by default)"""
    codebook: Path = DEFAULT_CODEBOOK
    """tile codebook"""
    budget: int = 500
    """random pixels per frame"""
    max_steps: int | None = 90
    """steps per session (from its start); None for whole sessions"""
    score_every: int = 5
    """score every n-th frame (the reconstructors see every frame)"""
    seed: int = 0
    """seed of the sampling patterns"""
    worlds: list[int] | None = None
    """only sessions that start in these worlds (None: all); e.g. --worlds 4 with a codebook of --worlds 1 2 3"""
    output: Path | None = Path("outputs/ablate_tiles.md")
    """write the table here too (None: print only)"""
    progress: bool = True
    """show progress bars"""


def _blind_to(context_log_prior: np.ndarray, axis: int) -> np.ndarray:
    """``(A, APPEARANCE_CONTEXTS)`` log prior of appearances that ignores one part of the context (``axis`` 1: the
    motion, 2: the moving direction): for each value of the others, the mean of the appearances' probabilities over
    its known values (a pose's sightings spread over them), for every value."""
    probability = np.exp(context_log_prior).reshape(len(context_log_prior), MOTIONS, MOVING_DIRECTIONS,
                                                     ANIMATION_PHASES)
    known = [slice(None)] * 4
    known[axis] = slice(1, None)  # 0 is "not known"
    probability[tuple(known)] = probability[tuple(known)].mean(axis=axis, keepdims=True)
    return np.log(probability).reshape(context_log_prior.shape).astype(np.float32)


def blind_to_direction(context_log_prior: np.ndarray) -> np.ndarray:
    """The appearances' log prior given the animation phase and the motion, not the way the enemy moves."""
    return _blind_to(context_log_prior, axis=2)


def blind_to_motion(context_log_prior: np.ndarray) -> np.ndarray:
    """The appearances' log prior given the animation phase and the moving direction, not how far it moved."""
    return _blind_to(context_log_prior, axis=1)


def variants(codebook) -> dict:
    """The reconstructors compared, by name."""
    return {
        "full": TileReconstructor(codebook),
        "posterior mean of 8": TileReconstructor(codebook, top_k=8),
        "no session prior": TileReconstructor(codebook, session_weight=0.0),
        "no block pairs": TileReconstructor(codebook, pair_weight=0.0),
        "tiles only": TileReconstructor(codebook, use_blocks=False),
        "no sprites": TileReconstructor(replace(codebook, sprite_appearances=None)),
        "sprites without their samples": TileReconstructor(codebook, sprite_miss_probability=1.0),
        "sprites blind to their motion": TileReconstructor(replace(
            codebook, sprite_context_log_prior=blind_to_motion(codebook.sprite_context_log_prior))),
        "sprites blind to the moving direction": TileReconstructor(replace(
            codebook, sprite_context_log_prior=blind_to_direction(codebook.sprite_context_log_prior))),
        "sprites blind to phase, direction and motion": TileReconstructor(replace(
            codebook, sprite_context_log_prior=None)),
        "fire bars not drawn": TileReconstructor(replace(
            codebook, firebar_keys=None, firebar_log_prior=None, firebar_pixels=None)),
        "no status digits": TileReconstructor(replace(codebook, hud_digit_slot=np.full_like(codebook.hud_digit_slot, -1))),
        "blind to the palette rotation": TileReconstructor(replace(codebook, blocks=np.where(
            codebook.blocks == ROTATING, colour_codes(ROTATION_COLOURS[1]), codebook.blocks), tiles=np.where(
            codebook.tiles == ROTATING, colour_codes(ROTATION_COLOURS[1]), codebook.tiles))),
        "stray pixels tolerated (1e-4)": TileReconstructor(codebook, stray_probability=1e-4),
        "hold": make_baseline("hold"),
        "linear": make_baseline("linear"),
    }


def main(args: Args) -> dict:
    require_at_least(args, ("budget", "score_every"))
    require_at_least(args, ("max_steps",), none_means="for whole sessions")
    codebook, _ = load_codebook(args.codebook)
    rows = evaluate_sessions(args.data, variants(codebook), budget=args.budget, max_steps=args.max_steps,
                             score_every=args.score_every, seed=args.seed, with_ssim=False, progress=args.progress,
                             worlds=None if args.worlds is None else tuple(args.worlds))
    if not rows:
        raise ValueError(f"{args.data} holds no session with frames: record some with --store-frames")
    summary = {entry["reconstructor"]: entry for entry in summarize(rows, ("reconstructor",))}
    full = summary["full"]["psnr"]
    lines = [f"# What each part of the tile reconstructor buys ({args.budget} random RGB pixels)", "",
             f"Command: `python experiments/ablate_tiles.py {shlex.join(sys.argv[1:])}`", f"Split: {SPLIT_DESCRIPTION}",
             f"Data: {', '.join(map(str, args.data))}, "
             f"{'every step' if args.max_steps is None else f'the first {args.max_steps} steps'} of each session, "
             f"one frame in {args.score_every} scored ({summary['full']['frames']} frames).", "",
             "| variant | PSNR (dB) | change | foreground PSNR (dB) | ms/frame |", "|---|---:|---:|---:|---:|"]
    for name, entry in summary.items():
        lines.append(f"| {name} | {entry['psnr']:.2f} | {entry['psnr'] - full:+.2f} | {entry['foreground_psnr']:.2f} | "
                     f"{entry['ms']:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return summary


if __name__ == "__main__":
    run_script(main, Args, __doc__)
