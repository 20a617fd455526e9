"""Check session files for missing or damaged shards and stale links, and repair them.

    python experiments/check_sessions.py data/sessions.h5              # report only (exit 1 if anything is wrong)
    python experiments/check_sessions.py data/sessions.h5 --repair     # drop broken entries, rewrite the links

A shard can be lost or damaged after it was recorded (a full disk, a bad copy, a file truncated by
another program). Readers already skip such a session with one warning naming it and its shard;
``--repair`` drops it from the index (the damaged shard is left where it is, for inspection) and
rewrites every link to the index's own shards folder, which also mends an index that was moved or
renamed together with its ``.shards`` folder. Rerunning the recording command (`agents/collect.py`
with the same arguments) then records the dropped sessions again.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgaps_env.cli import run_script
from sgaps_env.session_file import SessionFile, session_file_paths


@dataclass
class Args:
    paths: tyro.conf.Positional[list[Path]]
    """session files (index .h5) to check"""
    repair: bool = False
    """drop sessions whose shards are missing or damaged from the index and rewrite stale links"""


def check(path: Path, repair: bool) -> dict:
    """What is wrong with one session file (and, with ``repair``, what was done about it)."""
    session_file = SessionFile(path)
    report = {"path": str(path), "sessions": len(session_file), "stale_links": session_file.stale_links}
    if repair:
        outcome = session_file.repair()
        damaged, report["relinked"] = outcome["dropped"], outcome["relinked"]
    else:
        damaged = session_file.damaged()
    report["damaged"] = [{"session": f"{entry.checkpoint_key}/{entry.session_id}", "problem": problem}
                         for entry, problem in damaged]
    return report


def main(args: Args) -> int:
    """Check (and repair) every file; returns the exit status: 0 healthy or repaired, 1 damage left."""
    healthy = True
    for path in session_file_paths(args.paths):
        report = check(path, args.repair)
        damaged = report["damaged"]
        print(f"{report['path']}: {report['sessions']} indexed session(s), {len(damaged)} missing or damaged, "
              f"{report['stale_links']} stale link(s)")
        for item in damaged:
            print(f"  {'dropped' if args.repair else 'damaged'} {item['session']}: {item['problem']}")
        if args.repair:
            if damaged or report["relinked"]:
                print(f"  repaired: dropped {len(damaged)} session(s), rewrote the links of the index; rerun the "
                      "recording command to record the dropped sessions again")
        elif damaged or report["stale_links"]:
            healthy = False
            print("  rerun with --repair to drop the damaged sessions and rewrite the links")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(run_script(main, Args, __doc__))
