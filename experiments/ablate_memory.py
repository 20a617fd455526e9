"""What each part of the temporal memory buys, without the network: `python experiments/ablate_memory.py --help`.

The stage priors are built from the TRAIN split of --train (as train_reconstructor.py builds them),
then every held-out session is replayed through a MemoryBank per variant: each frame, the memory's
view (500 random pixels pasted over it) is scored against the truth, then the samples enter the
memory. PSNR is reported over the status bar (rows < 32), over the level outside the RAM sprite
boxes, and over the whole frame, each as 10 log10(1 / mean squared error of that part, divided by
the whole frame's pixel count), so the parts' errors add up to the whole frame's.

Variants: no prior (the hold baseline without its nearest fill); the prior's per-pixel mode only;
plus palette rotation (?-blocks, coins); plus the status-bar digits drawn from the state.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from models.memory import MemoryBank, MemoryConfig, StagePriors
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.coords import extract_pixels, frame_values, make_pattern, uv_to_pixel
from sgaps_env.session_file import read_sessions
from sgaps_env.sprites import HUD_ROWS, box_mask, sprite_boxes


@dataclass
class Args:
    """Options of the memory ablation."""

    train: list[str] = field(default_factory=lambda: ["data/train.h5"])
    """session files whose train split builds the priors"""
    heldout: list[str] = field(default_factory=lambda: ["data/heldout.h5"])
    """held-out session files to replay"""
    sample_count: int = 500
    """random pixels per frame"""
    max_steps: int = 150
    """steps per held-out session"""
    prior_steps: int | None = 300
    """steps per training session used for the priors (None: every step)"""
    seed: int = 0
    """seed of the sampling"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    require_at_least(args, ("sample_count", "max_steps"))
    require_at_least(args, ("prior_steps",), none_means="for every step")


def variants(priors: StagePriors) -> dict[str, MemoryBank]:
    banks = {"no prior": MemoryBank(3, None, MemoryConfig(use_prior=False))}
    for name in ("prior", "prior + rotation", "prior + rotation + digits"):
        bank = MemoryBank(3, priors)
        if "rotation" not in name:
            bank._rotate = lambda *a: None
        if "digits" not in name:
            bank._draw_digits = lambda *a: None
        banks[name] = bank
    return banks


def main(args: Args) -> dict:
    validate(args)
    priors = StagePriors.from_session_files(args.train, split="train", max_steps_per_session=args.prior_steps)
    banks = variants(priors)
    errors = {name: {"status bar": [], "level outside sprites": [], "sprite boxes": [], "frame": []} for name in banks}
    for session in read_sessions(args.heldout):
        first_steps = slice(0, args.max_steps)
        frames = session.frames(first_steps)
        states, masks = session.states(first_steps)
        rng = np.random.default_rng(session.seed(args.seed))
        for bank in banks.values():
            bank.reset()
        for frame, state, mask in zip(frames, states, masks):
            pixels = extract_pixels(frame, make_pattern("random", args.sample_count, rng), "rgb")
            rows, cols = uv_to_pixel(pixels[:, :2], 240, 256)
            truth = frame_values(frame, "rgb")
            sprites = box_mask(sprite_boxes(state, mask), margin=2)
            sprites[:HUD_ROWS] = False
            for name, bank in banks.items():
                canvas = bank.view(state)[0]
                canvas[rows, cols] = pixels[:, 2:]
                squared = ((canvas - truth) ** 2).mean(axis=-1)
                size = squared.size
                errors[name]["status bar"].append(squared[:HUD_ROWS].sum() / size)
                body = squared[HUD_ROWS:]
                errors[name]["level outside sprites"].append(body[~sprites[HUD_ROWS:]].sum() / size)
                errors[name]["sprite boxes"].append(squared[sprites].sum() / size)
                errors[name]["frame"].append(squared.mean())
                bank.update(rows, cols, pixels[:, 2:], state, mask)
    parts = list(next(iter(errors.values())))
    print(f"memory view + {args.sample_count} random pixels, no network; PSNR (dB) of each part's share of the error")
    print("| memory | " + " | ".join(parts) + " |")
    print("|---|" + "---:|" * len(parts))
    result = {}
    for name, by_part in errors.items():
        result[name] = {part: float(-10 * np.log10(max(np.mean(values), 1e-12))) for part, values in by_part.items()}
        print(f"| {name} | " + " | ".join(f"{result[name][part]:.2f}" for part in parts) + " |")
    return result


if __name__ == "__main__":
    run_script(main, Args, __doc__)
