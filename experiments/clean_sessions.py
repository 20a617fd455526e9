"""Clean recorded sessions into an index of the rows worth training on: `python experiments/clean_sessions.py --help`.

Three stages, each reporting how many rows (frames) it removed, in total and per checkpoint key:

  1 pre-filter   rows with fewer than --min-pixels valid sampled pixels, an invalid state (mask all
                 zero, NaN/inf) or, with --require-playing, a game_mode other than 1 (playing)
  2 stationary   rows whose state barely changed since the previous row: the L2 norm of the change
                 over the fields valid in both rows, without the clocks (--ignore-fields), is below
                 --min-velocity (default 1e-6: nothing but the clocks changed)
  3 balancing    k-means on the state vectors (masked entries = 0) of the remaining rows; clusters
                 larger than --cluster-cap (default --cap-factor x the median cluster size) are
                 randomly down-sampled to it, smaller ones are kept whole

Nothing is copied: the result is a small index file of (checkpoint_key, session_id, row) with the
parameters and counts, which models.dataset.SessionDataset(paths, index=OUTPUT) reads.

    python experiments/clean_sessions.py --inputs data/sessions.h5            # -> data/sessions.clean.npz
    python experiments/clean_sessions.py --inputs a.h5 b.h5 --output clean.npz --clusters 64 --min-velocity 0.01
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from models.cleaning import CLOCK_FIELDS, CleaningConfig, clean_sessions, default_index_path, format_report
from sgaps_env.cli import run_script


@dataclass
class Args:
    """Options of the cleaning pipeline."""

    inputs: list[Path] = field(default_factory=lambda: [Path("data/sessions.h5")])
    """session files (index .h5 written by agents/collect.py) to clean together"""
    output: Path | None = None
    """where to write the cleaned index (.npz); default: beside the first input, sessions.h5 -> sessions.clean.npz"""
    min_pixels: int = 1
    """stage 1: drop rows with fewer valid sampled pixels than this (distinct in-frame positions with finite values in [0, 1])"""
    require_playing: bool = True
    """stage 1: drop rows whose game_mode field is valid and not 1 (playing): title/demo screen, end-of-world sequence"""
    min_velocity: float = 1e-6
    """stage 2: drop rows whose state changed less than this since the previous row (L2 norm over fields valid in both rows, clocks excluded); 1e-6 drops exactly-unchanged states only, since any real change is >= 1e-5"""
    ignore_fields: list[str] = field(default_factory=lambda: list(CLOCK_FIELDS))
    """state fields left out of the velocity and the clustering (clocks that tick while nothing happens)"""
    balance: bool = True
    """stage 3: balance the rows by k-means clusters of their state vectors"""
    clusters: int = 32
    """stage 3: number of k-means clusters (fewer if there are fewer distinct states)"""
    cluster_cap: int | None = None
    """stage 3: keep at most this many rows per cluster; default: --cap-factor x the median cluster size"""
    cap_factor: float = 2.0
    """stage 3: the default cap as a multiple of the median cluster size"""
    seed: int = 0
    """seed of k-means and of the down-sampling of over-full clusters"""
    progress: bool = True
    """show a progress bar while reading sessions"""


def main(args: Args) -> dict:
    """Clean, write the index, print the report; returns the index's metadata (with 'output')."""
    config = CleaningConfig(min_pixels=args.min_pixels, require_playing=args.require_playing,
                            min_velocity=args.min_velocity, ignore_fields=tuple(args.ignore_fields),
                            balance=args.balance, clusters=args.clusters, cluster_cap=args.cluster_cap,
                            cap_factor=args.cap_factor, seed=args.seed)
    index = clean_sessions(args.inputs, config, progress=args.progress)
    output = Path(args.output) if args.output is not None else default_index_path(args.inputs[0])
    index.save(output)
    print(format_report(index.meta))
    print(f"\nwrote {output} ({len(index):,} rows of {len(index.sessions)} sessions); use it with "
          f"SessionDataset({[str(path) for path in args.inputs]}, index={str(output)!r})")
    return {**index.meta, "output": str(output)}


if __name__ == "__main__":
    run_script(main, Args, __doc__)
