"""Build the level atlas of worlds 1-4, an optional artifact of the reconstructors: `python experiments/build_atlas.py --help`.

    python experiments/build_atlas.py --data data/train_worlds.h5

The atlas is each level area's background as the training frames showed it (``models.memory.StagePriors``:
the per-pixel mode in level coordinates, sprite boxes left out, with how often the frames agreed), each session
voting for a pixel only the first --first-sightings times it shows it: the level as it starts. Given one,
``TileReconstructor(codebook, atlas=...)`` starts a known level from it instead of from nothing; without one
(and on every level the atlas lacks) it reconstructs from the samples alone. Sessions with frames of worlds
5-8 are refused (``sgaps_env.worlds``: they are held out); the atlas's metadata records the split, the
command and the sessions.
"""
from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.memory import StagePriors
from models.tile_reconstructor import DEFAULT_ATLAS
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.worlds import split_metadata


@dataclass
class Args:
    """Options of the atlas build."""

    data: list[str] = field(default_factory=lambda: ["data/train_worlds.h5"])
    """session files recorded with --store-frames, worlds 1-4 only (every split is used)"""
    max_steps: int | None = None
    """steps per session (from its start); None for whole sessions"""
    first_sightings: int | None = 48
    """a session votes for a level pixel only the first this many times it shows it, so the atlas holds each level
    as it starts (?-blocks not yet hit, coins not yet taken) rather than as the players left it; None: every frame"""
    output: Path = DEFAULT_ATLAS
    """where the atlas goes"""
    progress: bool = True
    """show progress bars"""


def main(args: Args) -> dict:
    require_at_least(args, ("max_steps",), none_means="for whole sessions")
    require_at_least(args, ("first_sightings",), none_means="for every frame")
    start = time.perf_counter()
    atlas = StagePriors.from_session_files(args.data, split=None, max_steps_per_session=args.max_steps,
                                           progress=args.progress, first_sightings=args.first_sightings)
    if not len(atlas):
        raise ValueError(f"{args.data} holds no frames to build an atlas from: record some with "
                         "`python agents/collect.py --stages train-worlds --store-frames ...`")
    seconds = time.perf_counter() - start
    atlas.save(args.output, {"split": split_metadata(), "levels": sorted(atlas.levels),
                             "command": "python experiments/build_atlas.py " + shlex.join(sys.argv[1:]),
                             "data": [str(path) for path in args.data], "seconds": round(seconds, 1)})
    print(f"{len(atlas)} level areas ({', '.join(sorted(atlas.levels))}) in {seconds:.0f} s -> {args.output} "
          f"({args.output.stat().st_size / 1e6:.1f} MB)")
    return {"levels": sorted(atlas.levels), "bytes": args.output.stat().st_size}


if __name__ == "__main__":
    run_script(main, Args, __doc__)
