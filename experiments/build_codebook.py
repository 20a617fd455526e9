"""Count the level-agnostic reconstructor's tile codebook on worlds 1-4: `python experiments/build_codebook.py --help`.

    python agents/collect.py --player demonstration --buttons complex --stages train-worlds --episodes 12 \
        --player-option follow_probability=0.5 --store-frames --workers 2 --seed 100 --output data/train_worlds.h5
    python experiments/build_codebook.py --data data/train_worlds.h5

What happens, top to bottom:
0. Every session is checked to hold no frame of worlds 5-8 (``sgaps_env.worlds``: they are held out for
   evaluation); the codebook's metadata records the split, the command and the sessions.
1. Every --every-th frame of the first --max-steps steps of each session is counted
   (``models.tile_reconstructor.CodebookCounter``): the coloured 16x16 blocks and 8x8 tiles on the level's
   grid outside the RAM sprite boxes, the status bar's tiles with the digits the state says they show (the
   positions that follow a digit are found from the frames), and each sprite pose's exact appearances (the
   pixels of its template window that differ from the session's background there), per context of animation
   phase, moving direction and motion since the step before.
2. Blocks, tiles and shapes seen fewer than --min-count times are left out; the codebook is written as a
   compressed npz (a few hundred KB) that ``TileReconstructor`` reads with ``load_codebook``.
"""
from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm.auto import tqdm

from models.tile_reconstructor import DEFAULT_CODEBOOK, CodebookCounter, save_codebook
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.session_file import list_sessions
from sgaps_env.worlds import TRAINING_WORLDS, check_training_sessions, session_world, split_metadata


@dataclass
class Args:
    """Options of the codebook count."""

    data: list[str] = field(default_factory=lambda: ["data/train_worlds.h5"])
    """session files recorded with --store-frames, worlds 1-4 only (every split is used)"""
    max_steps: int | None = 400
    """steps per session (from its start); None for whole sessions"""
    every: int = 2
    """count every n-th of those frames"""
    min_count: int = 2
    """leave out blocks, tiles and shapes seen fewer times"""
    worlds: list[int] = field(default_factory=lambda: list(TRAINING_WORLDS))
    """count sessions that start in these worlds only (a subset of 1-4): a codebook of worlds 1-3 measures
    on world 4 what a choice does on a world the codebook never saw, without touching worlds 5-8"""
    output: Path = DEFAULT_CODEBOOK
    """where the codebook goes"""
    progress: bool = True
    """show progress bars"""


def main(args: Args) -> dict:
    require_at_least(args, ("every", "min_count"))
    require_at_least(args, ("max_steps",), none_means="for whole sessions")
    if not args.worlds or not set(args.worlds) <= set(TRAINING_WORLDS):
        raise ValueError(f"--worlds {args.worlds}: count worlds among {list(TRAINING_WORLDS)} only (worlds 5-8 are "
                         "held out for evaluation)")
    sessions = [session for session in list_sessions(args.data, None)
                if session.has_frames and session_world(session) in args.worlds]
    if not sessions:
        raise ValueError(f"{args.data} holds no session with frames: record some with `python agents/collect.py "
                         "--stages train-worlds --store-frames ...`")
    rows = slice(0, args.max_steps)
    check_training_sessions(sessions, rows)
    start = time.perf_counter()
    counter = CodebookCounter()
    for session in tqdm(sessions, desc="codebook", unit="session", disable=not args.progress):
        states, masks = session.states(rows)
        # each counted frame's step before, for how its sprites moved (the first step has none: a mask of zeros)
        previous_states = np.concatenate([states[:1], states[:-1]])
        previous_masks = np.concatenate([np.zeros_like(masks[:1]), masks[:-1]])
        every = slice(None, None, args.every)
        counter.add(session.frames(rows)[every], states[every], masks[every], previous_states[every],
                    previous_masks[every])
    codebook = counter.codebook(args.min_count)
    seconds = time.perf_counter() - start
    metadata = {"split": split_metadata(), "worlds": sorted(args.worlds), "command": "python experiments/build_codebook.py " + shlex.join(sys.argv[1:]),
                "sessions": len(sessions), "data": [str(path) for path in args.data], "seconds": round(seconds, 1)}
    save_codebook(args.output, codebook, metadata)
    digits = int((codebook.hud_digit_slot >= 0).sum())
    print(f"{len(codebook.blocks):,} blocks, {len(codebook.tiles):,} tiles, {len(codebook.shapes):,} shapes, "
          f"{len(codebook.hud_tiles):,} status-bar tiles ({digits} positions follow a digit) from {len(sessions)} "
          f"sessions in {seconds:.0f} s -> {args.output} ({args.output.stat().st_size / 1e3:.0f} KB)")
    return {"blocks": len(codebook.blocks), "tiles": len(codebook.tiles), "seconds": seconds}


if __name__ == "__main__":
    run_script(main, Args, __doc__)
