"""How much of an unseen level the tile vocabulary of worlds 1-4 already knows: `python experiments/tile_vocabulary.py --help`.

    python experiments/tile_vocabulary.py --data data/eval_worlds.h5

Builds the vocabulary of palette-normalised 8x8 background tiles (``models.tile_vocabulary``) from
the sessions of worlds 1-4 in --data, then reports, for every stage of the held-out worlds 5-8 in
--data, the share of its tile instances the vocabulary holds, how many distinct shapes it has and
the share of flat (one-colour) tiles. Tiles with more than four colours (a sprite over the
background) are counted apart. A high share means a reconstructor that knows the tiles of worlds
1-4 can name most tiles of a level it has never seen from a few samples each.
"""
from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm.auto import tqdm

from models.tile_reconstructor import BLOCK, level_cells
from models.tile_vocabulary import TILE, TileVocabulary, colour_codes, frame_tiles
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.session_file import list_sessions
from sgaps_env.state import field_ints
from sgaps_env.worlds import HELD_OUT_WORLDS, SPLIT_DESCRIPTION


@dataclass
class Args:
    """Options of the tile vocabulary report."""

    data: list[str] = field(default_factory=lambda: ["data/eval_worlds.h5"])
    """session files recorded with --store-frames, holding stages of worlds 1-4 (the vocabulary) and 5-8"""
    max_steps: int | None = None
    """steps per session (from its start); None for whole sessions"""
    blocks: bool = False
    """also measure how many coloured 16x16 blocks and 8x8 tiles (exact colours) of worlds 5-8 worlds 1-4 show"""
    every: int = 3
    """with --blocks: use every n-th frame"""
    json_output: Path | None = None
    """also write the report as JSON here"""
    progress: bool = True
    """show progress bars"""


def block_coverage(paths, max_steps: int | None, every: int, progress: bool) -> dict[str, dict[str, float]]:
    """Per held-out stage: the share of its coloured 16x16 blocks and 8x8 tiles (exact colours, on the level's
    grid) that the frames of worlds 1-4 in ``paths`` also show. A cell holding a sprite counts as unknown."""
    rows = slice(0, max_steps)
    seen: dict[int, set] = {BLOCK: set(), TILE: set()}
    tallies: dict[str, Counter] = defaultdict(Counter)
    sessions = [s for s in list_sessions(paths, None) if s.has_frames]
    for held_out in (False, True):  # the worlds 1-4 sets first, then the held-out counts
        for session in tqdm(sessions, desc="held-out blocks" if held_out else "worlds 1-4 blocks", unit="session",
                            disable=not progress):
            states = session.states(rows)[0][::every]
            worlds, stages = field_ints(states, "world") + 1, field_ints(states, "stage") + 1
            for frame, camera, world, stage in zip(session.frames(rows)[::every], field_ints(states, "camera_x"),
                                                   worlds, stages):
                if (world in HELD_OUT_WORLDS) != held_out:
                    continue
                codes = colour_codes(frame)
                for size in (BLOCK, TILE):
                    cells = np.ascontiguousarray(level_cells(codes, int(camera), size))
                    keys = cells.view(np.dtype((np.void, 4 * size * size))).ravel().tolist()
                    if held_out:
                        tally = tallies[f"{world}-{stage}"]
                        tally[f"{size}"] += len(keys)
                        tally[f"{size}_known"] += sum(key in seen[size] for key in keys)
                    else:
                        seen[size].update(keys)
    return {stage: {"blocks_known": tally["16_known"] / max(tally["16"], 1),
                    "tiles_known": tally["8_known"] / max(tally["8"], 1), "blocks": tally["16"]}
            for stage, tally in sorted(tallies.items())}


def held_out_report(vocabulary: TileVocabulary, paths, max_steps: int | None, progress: bool) -> dict[str, dict]:
    """Per held-out stage: tile instances, the share the vocabulary knows, distinct shapes, flat share."""
    counts: dict[str, Counter] = defaultdict(Counter)
    rows = slice(0, max_steps)
    sessions = [s for s in list_sessions(paths, None) if s.has_frames]
    for session in tqdm(sessions, desc="held-out tiles", unit="session", disable=not progress):
        states = session.states(rows)[0]
        worlds, stages = field_ints(states, "world") + 1, field_ints(states, "stage") + 1
        for frame, camera, world, stage in zip(session.frames(rows), field_ints(states, "camera_x"), worlds, stages):
            if world not in HELD_OUT_WORLDS:
                continue
            shapes, valid = frame_tiles(frame, int(camera))
            tally = counts[f"{world}-{stage}"]
            tally["many_colours"] += int((~valid).sum())
            shapes = shapes[valid]
            tally["tiles"] += len(shapes)
            tally["known"] += int(vocabulary.known(shapes).sum())
            tally["flat"] += int((shapes == 0).all(axis=1).sum())
            tally.update({"shape:" + bytes(shape).hex() for shape in np.unique(shapes, axis=0)})
    report = {}
    for stage in sorted(counts):
        tally = counts[stage]
        report[stage] = {"tiles": tally["tiles"], "known": tally["known"] / max(tally["tiles"], 1),
                         "distinct": sum(1 for key in tally if key.startswith("shape:")),
                         "flat": tally["flat"] / max(tally["tiles"], 1), "many_colours": tally["many_colours"]}
    return report


def main(args: Args) -> dict:
    require_at_least(args, ("every",))
    require_at_least(args, ("max_steps",), none_means="for whole sessions")
    vocabulary = TileVocabulary.from_session_files(args.data, split=None, max_steps_per_session=args.max_steps,
                                                   skip_held_out=True, progress=args.progress)
    if not len(vocabulary):
        raise ValueError(f"{args.data} holds no frames of worlds 1-4 to build the vocabulary from: record some with "
                         "`python agents/collect.py --stages train-worlds --store-frames ...`")
    report = held_out_report(vocabulary, args.data, args.max_steps, args.progress)
    if not report:
        raise ValueError(f"{args.data} holds no frames of worlds 5-8 to measure: record some with "
                         "`python agents/collect.py --stages held-out-worlds --store-frames ...`")
    print(f"split: {SPLIT_DESCRIPTION}")
    print(f"vocabulary: {len(vocabulary):,} shapes from {sum(vocabulary.counts.values()):,} tiles of worlds 1-4")
    print(f"{'stage':>5}  {'tiles':>9}  {'known':>7}  {'distinct':>8}  {'flat':>6}  {'>4 colours':>10}")
    for stage, row in report.items():
        print(f"{stage:>5}  {row['tiles']:>9,}  {100 * row['known']:6.1f}%  {row['distinct']:>8}  "
              f"{100 * row['flat']:5.1f}%  {row['many_colours']:>10,}")
    total = sum(row["tiles"] for row in report.values())
    known = sum(row["known"] * row["tiles"] for row in report.values()) / total
    flat = sum(row["flat"] * row["tiles"] for row in report.values()) / total
    print(f"worlds 5-8: {total:,} tile instances, {100 * known:.1f}% known to the vocabulary, {100 * flat:.1f}% flat")
    result = {"vocabulary_shapes": len(vocabulary), "stages": report, "known": known, "flat": flat}
    if args.blocks:
        coverage = block_coverage(args.data, args.max_steps, args.every, args.progress)
        print(f"{'stage':>5}  {'16x16 blocks':>12}  {'known':>7}  {'8x8 known':>9}   (exact colours)")
        for stage, row in coverage.items():
            print(f"{stage:>5}  {row['blocks']:>12,}  {100 * row['blocks_known']:6.1f}%  {100 * row['tiles_known']:8.1f}%")
        blocks = sum(row["blocks"] for row in coverage.values())
        share = {name: sum(row[name] * row["blocks"] for row in coverage.values()) / max(blocks, 1)
                 for name in ("blocks_known", "tiles_known")}
        print(f"worlds 5-8: {100 * share['blocks_known']:.1f}% of {blocks:,} coloured 16x16 block instances and "
              f"{100 * share['tiles_known']:.1f}% of the 8x8 tiles are shown by the frames of worlds 1-4")
        result["blocks"] = {"stages": coverage, **share}
    if args.json_output is not None:
        args.json_output.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    run_script(main, Args, __doc__)
