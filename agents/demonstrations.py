"""Demonstrations: button sequences that play a stage from reset to its flag (or axe), and their file format.

The explorer (``agents.explorer``) finds them; ``agents/demos/W-S.json`` ships several per stage,
each from a different no-op start; ``DemonstrationPlayer`` plays from them and departs from them so
that recordings cover whole levels and still differ.

## File format (``agents/demos/W-S.json``, one per stage, UTF-8 JSON, a few kilobytes)

| key | meaning |
|---|---|
| `format` | `"sgaps-demonstrations"` |
| `version` | `1` |
| `stage` | `"W-S"` |
| `frame_skip` | NES frames per step the sequences assume (`4`, the environment's default) |
| `buttons` | the button set the action indices refer to (`"complex"`: 12 combos, listed in full) |
| `demonstrations` | a list of demonstrations, below |

Each demonstration:

| key | meaning |
|---|---|
| `route` | `"main"` (optional, the default) or `"walk"`: found without ever pressing down, so it walks past the pipes the main route takes |
| `noops` | the no-op start it assumes: `reset(options={"noops": noops})`, i.e. `info["frame_index"] == 1 + noops` after reset |
| `actions` | run-length coded button indices: a letter per index (`a` = 0, `b` = 1, ...) followed by a repeat count when above 1, e.g. `"e12de3"` = 4 x12, 3, 4 x3 |
| `steps` | the number of steps (the decoded length) |
| `goal_x` | Mario's x in the level at the goal |
| `spans` | what the screen shows while it plays: `[area, area_type, first, last]` runs of 16-pixel level columns (the camera's view, per area), the reference of the coverage report |
| `skips` | the steps (0-based, increasing) after which the view jumps past level that the demonstration never shows (a pipe to a bonus room that comes out further on, a pipe within an area): the demonstration player departs just before one so that recordings also walk that stretch |
| `loops` | `[area, area_type, camera_x]` where the view turns back within an area (a castle maze that loops until the right path is taken), seen in the replay or in probes that run on from before each skip: the columns right of that screen up to the next one a demonstration shows cannot be on screen in any play, so the coverage report leaves them out |
| `found` | how it was found: `frames_emulated`, `wall_seconds`, `seed` (informative only) |

Replaying ``actions`` step by step in ``SGAPS-SMB-W-S-v0`` with ``frame_skip=4``, a button set that
contains the combos used, no sticky actions and ``reset(options={"noops": noops})`` ends the episode at
the goal (``info["flag_get"]``). Files are read with size and range checks before anything is
allocated; a malformed file is a ``DemonstrationError`` naming the file and the problem.
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gym_super_mario_bros.actions import COMPLEX_MOVEMENT

from agents.heuristic import HeuristicPlayer
from sgaps_env import parse_stage
from sgaps_env.buttons import resolve_button_set
from sgaps_env.coords import FRAME_WIDTH
from sgaps_env.state import field_ints

#: The button set every shipped demonstration uses (gym-super-mario-bros' "complex" set).
DEMONSTRATION_BUTTONS: tuple[tuple[str, ...], ...] = tuple(tuple(combo) for combo in COMPLEX_MOVEMENT)

#: NES frames per step of every shipped demonstration.
DEMONSTRATION_FRAME_SKIP = 4

#: Width in level pixels of the columns the coverage of a level is counted in (one metatile).
COLUMN_WIDTH = 16

#: Level pixels the camera must move in one step for the view to count as jumping (it scrolls at most ~16).
JUMP_DISTANCE = 64

#: How many steps before a skip (drawn from this range) the demonstration player departs there: a pipe
#: is entered by the down press of the skip's own step or a few steps before it.
SKIP_LEAD_STEPS = (1, 24)

#: Loop probes (see ``probe_loops``): attempts per skip, how many steps before the skip they may start,
#: and how many steps each plays.
LOOP_PROBES, LOOP_PROBE_LEAD, LOOP_PROBE_STEPS = 8, 60, 300

#: Routes a stage can have a demonstration for, per no-op start: the explorer's ``"main"`` one, and
#: ``"walk"``, found without pressing down, which walks past the pipes the main route takes.
ROUTES = ("main", "walk")

#: Where the shipped demonstrations live.
DEMONSTRATIONS_DIR = Path(__file__).resolve().parent / "demos"

FORMAT_NAME, FORMAT_VERSION = "sgaps-demonstrations", 1

# Limits checked before anything is allocated.
MAX_FILE_BYTES = 1 << 20
MAX_DEMONSTRATIONS = 256
MAX_STEPS = 50_000
MAX_BUTTONS = 26
_RUN = re.compile(r"([a-z])(\d{0,5})")


class DemonstrationError(ValueError):
    """A demonstration file that cannot be used, with the file and the reason."""


@dataclass
class Demonstration:
    """One button sequence from reset (after ``noops`` no-op frames) to the goal of ``stage``."""

    stage: str
    noops: int
    actions: np.ndarray
    """uint8 indices into ``DEMONSTRATION_BUTTONS``, one per step."""
    goal_x: int = 0
    found: dict[str, Any] = field(default_factory=dict)
    spans: list[tuple[int, int, int, int]] | None = None
    """``(area, area_type, first column, last column)`` runs the screen shows while it plays."""
    skips: list[int] | None = None
    """Steps after which the view jumps past level it never shows (see ``view_skips``)."""
    loops: list[tuple[int, int, int]] | None = None
    """``(area, area_type, camera_x)`` where the view turns back (see ``view_loops`` and ``probe_loops``)."""
    route: str = "main"
    """``"main"``, or ``"walk"`` for one found without pressing down (see ``ROUTES``)."""


# --- what the screen shows ---------------------------------------------------------------------------


def screen_columns(states: np.ndarray) -> set[tuple[int, int, int]]:
    """The ``(area, area_type, column)`` level columns that frames with state vectors ``states (T, D)`` show.

    A frame shows the 256 pixels from the camera's left edge (``camera_x``); a column is
    ``COLUMN_WIDTH`` level pixels, counted when the frame shows any of it (17 columns unless the
    camera is on a column boundary). Areas (``area`` and ``area_type`` of the state vector) keep a
    bonus room's columns apart from the level's.
    """
    states = np.asarray(states)
    if states.ndim != 2 or len(states) == 0:
        return set()
    areas, area_types, camera = _views(states)
    views = np.stack([areas, area_types, camera // COLUMN_WIDTH, _last_column(camera)], axis=1)
    columns = set()
    for area, area_type, first, last in np.unique(views, axis=0).tolist():
        columns.update((area, area_type, column) for column in range(first, last + 1))
    return columns


def _views(states: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(area, area_type, camera_x)``, each ``(T,)`` int, of state vectors ``states (T, D)``."""
    return field_ints(states, "area"), field_ints(states, "area_type"), field_ints(states, "camera_x")


def _last_column(camera):
    """The last column a frame with this ``camera_x`` shows (in part): ``(camera_x + 255) // 16``."""
    return (camera + FRAME_WIDTH - 1) // COLUMN_WIDTH


def view_skips(states: np.ndarray) -> list[int]:
    """The steps after which the view jumps past level it never shows, from a replay's ``states (steps + 1, D)``.

    Row 0 is the reset, row ``k + 1`` follows step ``k``. The view jumps at step ``k`` when row ``k + 1``
    shows another ``(area, area_type)`` than row ``k`` or a ``camera_x`` more than ``JUMP_DISTANCE``
    away. The jump skips level when the next row back in row ``k``'s area shows a camera further right
    than row ``k``'s screen, and some column in between is shown by no row at all: 1-1's pipe to the
    bonus room skips ground x 1,024-2,559; coming out of the room, or a castle's loop, skips nothing.
    """
    states = np.asarray(states)
    if states.ndim != 2 or len(states) < 2:
        return []
    areas, area_types, camera = _views(states)
    places = areas * 256 + area_types
    jumps = np.flatnonzero((places[1:] != places[:-1]) | (np.abs(np.diff(camera)) > JUMP_DISTANCE))
    shown = screen_columns(states)
    skips = []
    for k in jumps.tolist():
        back = np.flatnonzero(places[k + 1:] == places[k])
        if len(back) == 0:
            continue
        first = _last_column(int(camera[k])) + 1
        last = int(camera[k + 1 + back[0]]) // COLUMN_WIDTH
        place = (int(areas[k]), int(area_types[k]))
        if any((*place, column) not in shown for column in range(first, last)):
            skips.append(k)
    return skips


def view_loops(states: np.ndarray) -> list[tuple[int, int, int]]:
    """``(area, area_type, camera_x)`` before each step of ``states (T, D)`` where the view jumps back in an area."""
    states = np.asarray(states)
    if states.ndim != 2 or len(states) < 2:
        return []
    areas, area_types, camera = _views(states)
    places = areas * 256 + area_types
    back = np.flatnonzero((places[1:] == places[:-1]) & (np.diff(camera) < -JUMP_DISTANCE))
    return sorted({(int(areas[k]), int(area_types[k]), int(camera[k])) for k in back.tolist()})


def probe_loops(demonstration: Demonstration, env, skips: list[int]) -> list[tuple[int, int, int]]:
    """Loops past the level that ``skips`` of ``demonstration`` jump over: run on instead of taking the pipe.

    For each skip, ``LOOP_PROBES`` times: from up to ``LOOP_PROBE_LEAD`` steps before it, press sticky
    random running and jumping buttons for ``LOOP_PROBE_STEPS`` steps and keep where the view turns back.
    (8-4 turns it back at camera x 2,454 and 3,732, past pipes its route takes.) ``env`` is a
    ``demonstration_env`` of the stage; seeded by the no-op start, so the result is reproducible.
    """
    if not skips:
        return []
    rng = np.random.default_rng(demonstration.noops)
    run_buttons = [DEMONSTRATION_BUTTONS.index(combo) for combo in
                   [("right",), ("right", "A"), ("right", "B"), ("right", "A", "B"), ("A",), ("NOOP",)]]
    coords = np.full((env.unwrapped.sample_count, 2), 0.5, np.float32)
    env.reset(options={"noops": demonstration.noops})
    snapshots = {}
    wanted = {step for skip in skips for step in range(max(0, skip - LOOP_PROBE_LEAD), skip)}
    for step, action in enumerate(demonstration.actions[:max(skips)]):
        if step in wanted:
            snapshots[step] = env.clone_state()
        env.step({"buttons": int(action), "coords": coords})
    loops = set()
    for skip in skips:
        starts = list(range(max(0, skip - LOOP_PROBE_LEAD), skip))
        for _ in range(LOOP_PROBES):
            env.restore_state(snapshots[starts[int(rng.integers(len(starts)))]])
            button, states = run_buttons[2], []
            for _ in range(LOOP_PROBE_STEPS):
                if rng.random() < 0.25:
                    button = run_buttons[int(rng.integers(len(run_buttons)))]
                observation, _, terminated, truncated, _ = env.step({"buttons": button, "coords": coords})
                states.append(observation["state"])
                if terminated or truncated:
                    break
            loops.update(view_loops(np.stack(states)))
    return sorted(loops)


def columns_to_spans(columns: set[tuple[int, int, int]]) -> list[tuple[int, int, int, int]]:
    """``{(area, type, column)}`` -> sorted runs ``(area, type, first, last)``."""
    spans: list[list[int]] = []
    for area, area_type, column in sorted(columns):
        if spans and spans[-1][:2] == [area, area_type] and spans[-1][3] == column - 1:
            spans[-1][3] = column
        else:
            spans.append([area, area_type, column, column])
    return [tuple(span) for span in spans]


def level_columns(stage: str, directory: str | Path | None = None) -> set[tuple[int, int, int]]:
    """The level of ``stage`` as the coverage report counts it: ``{(area, area_type, column)}``.

    Per area that the stage's demonstrations show, every column from the first to the last one they
    show: the whole stretch of level from start to goal, including the parts a pipe lets them skip;
    less, past each of their ``loops``, the columns right of the loop's screen up to the next one a
    demonstration shows, which no play can put on screen.
    """
    demonstrations = load_demonstrations(stage, directory)
    extent: dict[tuple[int, int], tuple[int, int]] = {}
    shown: set[tuple[int, int, int]] = set()
    for demonstration in demonstrations:
        if demonstration.spans is None or demonstration.loops is None:  # an older file: measure it
            measure_route(demonstration)
        shown |= spans_to_columns(demonstration.spans)
        for area, area_type, first, last in demonstration.spans:
            low, high = extent.get((area, area_type), (first, last))
            extent[(area, area_type)] = (min(low, first), max(high, last))
    level = {(area, area_type, column) for (area, area_type), (first, last) in extent.items()
             for column in range(first, last + 1)}
    for area, area_type, camera in {loop for demonstration in demonstrations for loop in demonstration.loops}:
        column = _last_column(camera) + 1
        while (area, area_type, column) in level and (area, area_type, column) not in shown:
            level.discard((area, area_type, column))
            column += 1
    return level


def demonstration_env(stage: str):
    """The cheapest environment that plays demonstrations of ``stage`` exactly (one sampled pixel)."""
    from sgaps_env import SGAPSSuperMarioBrosEnv

    return SGAPSSuperMarioBrosEnv(stage=stage, sample_count=1, frame_skip=DEMONSTRATION_FRAME_SKIP,
                                  buttons=[list(combo) for combo in DEMONSTRATION_BUTTONS], noop_max=0)


def describe_route(demonstration: Demonstration, states: np.ndarray, env) -> None:
    """Set ``spans``, ``skips`` and ``loops`` of ``demonstration`` from the state vectors of its replay
    (``env``, a ``demonstration_env`` of its stage, plays the loop probes)."""
    demonstration.spans = columns_to_spans(screen_columns(states))
    demonstration.skips = view_skips(states)
    demonstration.loops = sorted(set(view_loops(states)) | set(probe_loops(demonstration, env, demonstration.skips)))


def measure_route(demonstration: Demonstration) -> None:
    """Replay ``demonstration`` and set its ``spans``, ``skips`` and ``loops`` (files written before they existed)."""
    env = demonstration_env(demonstration.stage)
    try:
        outcome = replay(demonstration, env, keep_states=True)
        describe_route(demonstration, outcome.states, env)
    finally:
        env.close()


def spans_to_columns(spans: list[tuple[int, int, int, int]]) -> set[tuple[int, int, int]]:
    """The inverse of ``columns_to_spans``."""
    return {(area, area_type, column) for area, area_type, first, last in spans for column in range(first, last + 1)}


def encode_actions(actions: np.ndarray) -> str:
    """Run-length code: ``[4]*12 + [3] + [4]*3`` -> ``"e12de3"``."""
    out, actions = [], [int(a) for a in actions]
    i = 0
    while i < len(actions):
        j = i
        while j < len(actions) and actions[j] == actions[i]:
            j += 1
        out.append(chr(ord("a") + actions[i]) + (str(j - i) if j - i > 1 else ""))
        i = j
    return "".join(out)


def decode_actions(code: str, buttons: int, where: str = "actions") -> np.ndarray:
    """The inverse of ``encode_actions``; raises ``DemonstrationError`` on anything else."""
    if not isinstance(code, str) or len(code) > 6 * MAX_STEPS:
        raise DemonstrationError(f"{where} must be a run-length string of at most {6 * MAX_STEPS} characters")
    runs = []
    total = 0
    position = 0
    for match in _RUN.finditer(code):
        if match.start() != position:
            break
        position = match.end()
        index, count = ord(match.group(1)) - ord("a"), int(match.group(2) or 1)
        if index >= buttons or count < 1:
            raise DemonstrationError(f"{where}: run {match.group(0)!r} names button {index} (the set has {buttons}) "
                                     "or a zero count")
        total += count
        if total > MAX_STEPS:
            raise DemonstrationError(f"{where} is longer than {MAX_STEPS} steps")
        runs.append((index, count))
    if position != len(code):
        raise DemonstrationError(f"{where}: unexpected {code[position:position + 12]!r} at character {position}; "
                                 "runs are a letter (a = button 0) and an optional count")
    return np.repeat(np.array([r[0] for r in runs], np.uint8), [r[1] for r in runs])


def demonstration_path(stage: str, directory: str | Path | None = None) -> Path:
    world, level = parse_stage(stage)
    return Path(directory or DEMONSTRATIONS_DIR) / f"{world}-{level}.json"


def load_demonstrations(stage: str, directory: str | Path | None = None) -> list[Demonstration]:
    """The demonstrations of ``stage`` (``"W-S"``) shipped in ``directory`` (default: the repository's)."""
    path = demonstration_path(stage, directory)
    if not path.is_file():
        raise FileNotFoundError(f"no demonstrations for stage {stage} at {path}: find some with "
                                f"`python agents/explore.py --stages {stage}`")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DemonstrationError(f"{path} is {size} bytes, more than the {MAX_FILE_BYTES} a demonstration file may be")
    try:
        content = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DemonstrationError(f"{path} is not UTF-8 JSON ({error})") from None
    return parse_demonstrations(content, str(path), expected_stage=stage)


def parse_demonstrations(content: Any, where: str, expected_stage: str | None = None) -> list[Demonstration]:
    """Check a decoded demonstration file and return its demonstrations (in ``DEMONSTRATION_BUTTONS`` indices)."""
    def fail(problem: str):
        raise DemonstrationError(f"{where}: {problem} (see agents/demonstrations.py for the format)")

    if not isinstance(content, dict) or content.get("format") != FORMAT_NAME:
        fail(f"not a demonstration file: expected a JSON object with \"format\": \"{FORMAT_NAME}\"")
    if content.get("version") != FORMAT_VERSION:
        fail(f"version {content.get('version')!r} is not the supported {FORMAT_VERSION}")
    try:
        world, level = parse_stage(content.get("stage"))
    except ValueError as error:
        fail(str(error))
    stage = f"{world}-{level}"
    if expected_stage is not None and parse_stage(expected_stage) != (world, level):
        fail(f"holds stage {stage}, not {expected_stage}")
    if content.get("frame_skip") != DEMONSTRATION_FRAME_SKIP:
        fail(f"frame_skip {content.get('frame_skip')!r}: only {DEMONSTRATION_FRAME_SKIP} is supported")
    buttons = content.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        fail(f"buttons must be a list of 1 to {MAX_BUTTONS} button combinations")
    try:
        combos = resolve_button_set(buttons)
    except ValueError as error:
        fail(str(error))
    unknown = [combo for combo in combos if combo not in DEMONSTRATION_BUTTONS]
    if unknown:
        fail(f"button combos {unknown} are not in the demonstration button set {list(DEMONSTRATION_BUTTONS)}")
    to_shared = np.array([DEMONSTRATION_BUTTONS.index(combo) for combo in combos], np.uint8)
    entries = content.get("demonstrations")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_DEMONSTRATIONS:
        fail(f"demonstrations must be a list of 1 to {MAX_DEMONSTRATIONS} entries")
    demonstrations = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict):
            fail(f"demonstration {number} is not an object")
        noops = entry.get("noops")
        if isinstance(noops, bool) or not isinstance(noops, int) or not 0 <= noops <= 10_000:
            fail(f"demonstration {number}: noops must be an integer in [0, 10000], got {noops!r}")
        actions = decode_actions(entry.get("actions"), len(combos), f"{where}: demonstration {number} actions")
        if entry.get("steps") != len(actions):
            fail(f"demonstration {number}: steps {entry.get('steps')!r} but its actions decode to {len(actions)}")
        goal_x = entry.get("goal_x", 0)
        if isinstance(goal_x, bool) or not isinstance(goal_x, int) or not 0 <= goal_x < 65536:
            fail(f"demonstration {number}: goal_x must be an integer in [0, 65535], got {goal_x!r}")
        found = entry.get("found", {})
        spans = entry.get("spans")
        if spans is not None:
            if (not isinstance(spans, list) or len(spans) > 4096
                    or not all(isinstance(span, list) and len(span) == 4 and all(
                        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 65536 for v in span)
                        and span[2] <= span[3] for span in spans)):
                fail(f"demonstration {number}: spans must be a list of at most 4096 [area, area_type, first, last] "
                     "runs of integers in [0, 65535] with first <= last")
            spans = [tuple(span) for span in spans]
        skips = entry.get("skips")
        if skips is not None:
            if (not isinstance(skips, list) or len(skips) > 4096
                    or not all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k < len(actions) for k in skips)
                    or any(a >= b for a, b in zip(skips, skips[1:]))):
                fail(f"demonstration {number}: skips must be a list of at most 4096 increasing step indices in "
                     f"[0, {len(actions)})")
        loops = entry.get("loops")
        if loops is not None:
            if (not isinstance(loops, list) or len(loops) > 4096
                    or not all(isinstance(loop, list) and len(loop) == 3 and all(
                        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 65536 for v in loop)
                        for loop in loops)):
                fail(f"demonstration {number}: loops must be a list of at most 4096 [area, area_type, camera_x] "
                     "triples of integers in [0, 65535]")
            loops = [tuple(loop) for loop in loops]
        route = entry.get("route", "main")
        if route not in ROUTES:
            fail(f"demonstration {number}: route must be one of {list(ROUTES)}, got {route!r}")
        demonstrations.append(Demonstration(stage, noops, to_shared[actions], goal_x,
                                            found if isinstance(found, dict) else {}, spans, skips, loops, route))
    return demonstrations


def save_demonstrations(demonstrations: list[Demonstration], directory: str | Path | None = None) -> Path:
    """Write the demonstrations of one stage to ``directory/W-S.json`` (replacing the file)."""
    stages = {demonstration.stage for demonstration in demonstrations}
    if len(stages) != 1:
        raise ValueError(f"save_demonstrations takes the demonstrations of one stage, got stages {sorted(stages)}")
    stage = stages.pop()
    ordered = sorted(demonstrations, key=lambda d: (ROUTES.index(d.route), d.noops))
    content = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "stage": stage, "frame_skip": DEMONSTRATION_FRAME_SKIP,
        "buttons": [list(combo) for combo in DEMONSTRATION_BUTTONS],
        "demonstrations": [{**({} if d.route == "main" else {"route": d.route}), "noops": d.noops,
                            "steps": int(len(d.actions)), "goal_x": int(d.goal_x),
                            "found": d.found, "actions": encode_actions(d.actions),
                            **({} if d.spans is None else {"spans": [list(span) for span in d.spans]}),
                            **({} if d.skips is None else {"skips": [int(k) for k in d.skips]}),
                            **({} if d.loops is None else {"loops": [list(map(int, loop)) for loop in d.loops]})}
                           for d in ordered],
    }
    path = demonstration_path(stage, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(content, indent=1) + "\n", "utf-8")
    temporary.replace(path)
    return path


# --- replaying ---------------------------------------------------------------------------------------


@dataclass
class ReplayOutcome:
    reached_goal: bool
    steps: int
    final_x: int
    frames: int
    states: np.ndarray | None = None
    """``(steps + 1, D)``: the state vector after reset and after every step, with ``keep_states``."""


def button_map(env_combos: list[tuple[str, ...]]) -> np.ndarray:
    """Demonstration index -> the env's button index (255 where the env lacks the combo)."""
    mapping = np.full(len(DEMONSTRATION_BUTTONS), 255, np.uint8)
    for index, combo in enumerate(DEMONSTRATION_BUTTONS):
        if combo in env_combos:
            mapping[index] = env_combos.index(combo)
    return mapping


def check_env_for_demonstrations(config: dict, used: set[int] | None = None) -> np.ndarray:
    """The button map for an env ``config``; raises ``ValueError`` when the env cannot replay demonstrations."""
    if config.get("frame_skip") != DEMONSTRATION_FRAME_SKIP:
        raise ValueError(f"demonstrations are recorded with frame_skip={DEMONSTRATION_FRAME_SKIP}; this environment "
                         f"has frame_skip={config.get('frame_skip')}: use --frame-skip {DEMONSTRATION_FRAME_SKIP}")
    if config.get("repeat_action_probability", 0.0):
        raise ValueError("demonstrations replay exactly only without sticky actions: use "
                         "repeat_action_probability=0 (--repeat-action-probability 0)")
    mapping = button_map([tuple(combo) for combo in config["buttons"]])
    missing = sorted({DEMONSTRATION_BUTTONS[i] for i in (used if used is not None else range(len(mapping)))
                      if mapping[i] == 255})
    if missing:
        raise ValueError(f"the environment's button set lacks {['+'.join(c) for c in missing]}, which the "
                         "demonstrations press: use the 'complex' button set (--buttons complex)")
    return mapping


def replay(demonstration: Demonstration, env, keep_states: bool = False) -> ReplayOutcome:
    """Play ``demonstration`` in ``env`` (a single-stage ``SGAPSSuperMarioBrosEnv`` of its stage) from reset."""
    base = getattr(env, "unwrapped", env)
    if base.stage != parse_stage(demonstration.stage):
        raise ValueError(f"the demonstration is for stage {demonstration.stage}, the environment plays "
                         f"{base.stage}: make the env with stage={demonstration.stage!r}")
    mapping = check_env_for_demonstrations(base.config, set(np.unique(demonstration.actions).tolist()))
    coords = np.full((base.sample_count, 2), 0.5, np.float32)
    observation, info = env.reset(options={"noops": demonstration.noops})
    states = [observation["state"]] if keep_states else None
    steps, terminated = 0, False
    for action in demonstration.actions:
        observation, _, terminated, truncated, info = env.step({"buttons": int(mapping[action]), "coords": coords})
        steps += 1
        if keep_states:
            states.append(observation["state"])
        if terminated or truncated:
            break
    return ReplayOutcome(bool(terminated and info["flag_get"]) and steps == len(demonstration.actions), steps,
                         int(info["x_pos"]), int(info["frame_index"]), None if states is None else np.stack(states))


# --- playing from demonstrations ------------------------------------------------------------------------


class DemonstrationPlayer:
    """Follows a shipped demonstration of the stage being played, then departs from it.

    At the first step of a stage it picks, uniformly, one of the stage's demonstrations (of either
    route: where the stage has a walk route, half the episodes that follow one walk past the pipes)
    that it can follow exactly:
    the environment started with ``n = info["frame_index"] - 1`` no-ops, so a demonstration that
    assumes ``m >= n`` with ``m - n`` a multiple of ``frame_skip`` is replayed after ``(m - n) /
    frame_skip`` NOOP steps (the shipped starts 27-30 cover every ``n <= 30``, the recorder's default
    ``noop_max``). Where none fits (a larger ``noop_max``, or a later stage of the whole game) it
    follows the closest one anyway, which usually holds for a while.

    A stage without a demonstration file is played by the ``HeuristicPlayer`` (with one warning).
    Each episode it follows the demonstration to the end with ``follow_probability``. Otherwise it
    departs. With ``skip_departure_probability`` (when the demonstration has ``skips``) it departs a
    few steps (``SKIP_LEAD_STEPS``) before one of its skips drawn uniformly and hands over to a
    ``HeuristicPlayer`` at once, so that the rest of the episode walks the stretch a pipe lets the
    demonstration skip. Otherwise it departs at a step drawn uniformly along it, presses random
    sticky buttons for ``perturb_steps`` steps (drawn from the range), then hands over to a
    ``HeuristicPlayer``. So the recordings reach every part of the level, from continuous play from
    reset, and differ. (Random buttons next to a pipe often kill Mario before he walks on.)

    | argument | default | meaning |
    |---|---|---|
    | `button_set` | `"complex"` | the env's button set; it must hold the 12 combos of the "complex" set |
    | `frame_skip` | 4 | the env's frame skip; demonstrations need 4 |
    | `repeat_action_probability` | 0.0 | the env's sticky actions; demonstrations need none |
    | `follow_probability` | 0.25 | chance an episode follows its demonstration to the goal |
    | `skip_departure_probability` | 0.5 | chance a departing episode departs just before a skip |
    | `perturb_steps` | `(4, 40)` | range of the number of random steps after departing |
    | `directory` | shipped | folder of `W-S.json` demonstration files |
    | `seed` | None | seeds the choices (``reset(seed)`` reseeds) |
    """

    name = "demonstration"

    def __init__(self, button_set: str | list[list[str]] = "complex", frame_skip: int = DEMONSTRATION_FRAME_SKIP,
                 follow_probability: float = 0.25, perturb_steps: tuple[int, int] | list[int] = (4, 40),
                 directory: str | Path | None = None, seed: int | None = None,
                 repeat_action_probability: float = 0.0, skip_departure_probability: float = 0.5):
        self.combos = resolve_button_set(button_set)
        self._map = check_env_for_demonstrations({"frame_skip": frame_skip, "buttons": self.combos,
                                                  "repeat_action_probability": repeat_action_probability})
        self.frame_skip = frame_skip
        for name, value in (("follow_probability", follow_probability),
                            ("skip_departure_probability", skip_departure_probability)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if (len(perturb_steps) != 2 or not all(isinstance(v, int) for v in perturb_steps)
                or not 0 <= perturb_steps[0] <= perturb_steps[1]):
            raise ValueError(f"perturb_steps must be two integers 0 <= low <= high, got {perturb_steps}")
        self.follow_probability = follow_probability
        self.skip_departure_probability = skip_departure_probability
        self.perturb_steps = (int(perturb_steps[0]), int(perturb_steps[1]))
        self.directory = directory
        self._cache: dict[str, list[Demonstration]] = {}
        self._noop = self.combos.index(("NOOP",)) if ("NOOP",) in self.combos else 0
        self._rng = np.random.default_rng(seed)
        self.reset(seed)

    def demonstrations(self, stage: str) -> list[Demonstration]:
        """The stage's demonstrations; none (with one warning) where no file ships for it."""
        if stage not in self._cache:
            try:
                self._cache[stage] = load_demonstrations(stage, self.directory)
            except FileNotFoundError as error:
                warnings.warn(f"{error}; the heuristic player plays stage {stage} instead", stacklevel=2)
                self._cache[stage] = []
        return self._cache[stage]

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._stage = None
        self._plan: list[int] = []
        self._position = 0
        self._departure: int | None = None
        self._before_skip = False
        self._perturbing = 0
        self._random_button = self._noop
        self._fallback = None
        self.demonstration: Demonstration | None = None

    def _start_stage(self, stage: str, frame_index: int, first_of_episode: bool) -> None:
        demonstrations = self.demonstrations(stage)
        self._fallback = None
        if not demonstrations:
            self.demonstration, self._plan, self._position, self._departure = None, [], 0, None
            self._perturbing = 0
            return
        noops = frame_index - 1 if first_of_episode else None
        exact = [d for d in demonstrations
                 if noops is not None and d.noops >= noops and (d.noops - noops) % self.frame_skip == 0]
        if exact:
            chosen = exact[int(self._rng.integers(len(exact)))]
            wait = (chosen.noops - noops) // self.frame_skip
        else:
            chosen = min(demonstrations, key=lambda d: abs(d.noops - (noops or 0)))
            wait = 0
        self.demonstration = chosen
        self._plan = [self._noop] * wait + [int(self._map[a]) for a in chosen.actions]
        self._position = 0
        self._departure = self._departure_step(chosen, wait)
        self._perturbing = 0
        self._fallback = None

    def _departure_step(self, demonstration: Demonstration, wait: int) -> int | None:
        """The plan step to depart at (``None``: follow to the end); the plan starts with ``wait`` NOOPs."""
        self._before_skip = False
        if self._rng.random() < self.follow_probability:
            return None
        self._before_skip = bool(demonstration.skips) and self._rng.random() < self.skip_departure_probability
        if self._before_skip:
            skip = demonstration.skips[int(self._rng.integers(len(demonstration.skips)))]
            lead = int(self._rng.integers(SKIP_LEAD_STEPS[0], SKIP_LEAD_STEPS[1] + 1))
            return wait + max(0, skip - lead)
        return int(self._rng.integers(wait, len(self._plan)))

    def act(self, observation, info) -> int:
        stage = f"{info['world']}-{info['stage']}"
        if stage != self._stage:
            first = self._stage is None
            self._stage = stage
            self._start_stage(stage, int(info["frame_index"]), first)
        if self._fallback is None and (self._departure is None or self._position < self._departure) \
                and self._position < len(self._plan):
            self._position += 1
            return self._plan[self._position - 1]
        if self._fallback is None and self._departure is not None and self._position == self._departure:
            self._perturbing = 0 if self._before_skip else int(
                self._rng.integers(self.perturb_steps[0], self.perturb_steps[1] + 1))
            self._position += 1  # departed: from here on the demonstration is not followed
        if self._perturbing > 0:
            self._perturbing -= 1
            if self._rng.random() >= 0.75:
                self._random_button = int(self._rng.integers(len(self.combos)))
            return self._random_button
        if self._fallback is None:
            self._fallback = HeuristicPlayer(button_set=[list(c) for c in self.combos],
                                             seed=int(self._rng.integers(2**31)))
        return self._fallback.act(observation, info)
