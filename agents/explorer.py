"""Go-Explore for Super Mario Bros: find a button sequence from reset to a stage's flag (or axe).

The emulator is deterministic and ``SGAPSSuperMarioBrosEnv.clone_state`` snapshots it, so the
explorer keeps an archive of *cells* (coarse game situations), each with the shortest button
sequence found that reaches it and a snapshot of where that sequence ends. Every iteration it picks
a cell (favouring cells at the rightmost edge of their area and cells picked rarely), restores its
snapshot and presses random buttons for a while, adding or improving every cell it passes. Every
place Mario stands on for the first time is probed once by holding down for two steps, because
pipes are entered only from a few pixels of their top, which random buttons seldom hit (8-4 is a
chain of such pipes). When a step reaches the goal, the sequence that got there is replayed from
``reset`` to confirm it.

A cell is ``(world, stage, area pointer, x // cell_width, y band, big)``: the area pointer keeps
pipes, bonus rooms and the loops of the castle mazes (4-4, 7-4, 8-4) apart, the y band keeps the
upper and lower routes of a maze apart, and being big is worth remembering because it survives a
hit. Cells outside the target stage (skip zones) are never kept. A cell keeps the shortest
sequence into it; with ``prefer_coins`` the one with the most coins first, so that a hidden block
opened on the way is remembered (8-4 has one that is the only step up to a pipe). With
``ledges``, a cell where Mario stands has the 16-pixel row he stands on instead of the y band, so
standing on that block (a band shares it with the ground below) is a cell of its own; every new
such cell, and every place where more coins than before mean a block was just opened, is probed
with a few jumps to either side, each landing probed for a pipe. With ``never_down`` it never
presses down, so it finds the route that walks past every pipe (the *walk* route: 1-1 without the
bonus room), where the level allows one.

    explorer = Explorer("4-4", noops=30, seed=0)
    result = explorer.run(max_frames=3_000_000)
    result.demonstration  # a Demonstration that replays to the axe, or None

Long runs for many stages: ``python agents/explore.py --help``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from agents.demonstrations import DEMONSTRATION_BUTTONS, Demonstration, demonstration_env, describe_route, replay
from sgaps_env import parse_stage

#: How often each combo of ``DEMONSTRATION_BUTTONS`` is drawn when exploring: mostly forward,
#: enough of everything else (left to back off, down for pipes, A alone for swimming).
EXPLORATION_WEIGHTS = {
    ("NOOP",): 0.06, ("right",): 0.10, ("right", "A"): 0.14, ("right", "B"): 0.16, ("right", "A", "B"): 0.20,
    ("A",): 0.08, ("left",): 0.06, ("left", "A"): 0.05, ("left", "B"): 0.03, ("left", "A", "B"): 0.03,
    ("down",): 0.06, ("up",): 0.02,
}

# RAM addresses read for cells (see docs/state_vector.md for the full map).
_X_HIGH, _X_LOW, _Y, _Y_VIEWPORT = 0x006D, 0x0086, 0x00CE, 0x00B5
_WORLD, _STAGE, _AREA_POINTER, _POWERUP = 0x075F, 0x075C, 0x0750, 0x0756
_FLOAT_STATE, _COINS = 0x001D, 0x075E
#: Pixels Mario's x may change in two steps of holding down without having gone anywhere.
_PIPE_JUMP = 64
#: Jumps tried from every new ledge (with ``ledges``): (direction, NOOP steps waited first, steps
#: holding the direction and A). Waiting lets a piranha plant that was out go back into its pipe.
_LEDGE_JUMPS = (("right", 0, 4), ("right", 0, 8), ("right", 12, 8), ("left", 0, 4), ("left", 0, 8))
#: Steps holding right after a ledge jump before it is given up if Mario has not landed.
_LANDING_STEPS = 12
#: No level is 64 screens long: a larger page number is the transient garbage of a maze's skip back.
_MAX_PAGE = 0x40


@dataclass
class CellRecord:
    """The best way found into one cell: its button sequence, the snapshot where it ends, and counts."""

    actions: bytes
    snapshot: tuple
    x: int
    coins: int = 0
    chosen: int = 0
    seen: int = 0


@dataclass
class ExplorationResult:
    """What one exploration found and what it cost."""

    stage: str
    noops: int
    demonstration: Demonstration | None
    frames_emulated: int
    frames_to_goal: int | None
    wall_seconds: float
    iterations: int
    cells: int
    furthest_x: int
    history: list[tuple[int, int, int]] = field(default_factory=list)
    """(frames emulated, cells, furthest x) every few iterations: the archive's progress."""
    repairs: int = 0
    """times a found sequence did not replay from reset and the archive was rebuilt along it"""

    def summary(self) -> dict:
        return {"stage": self.stage, "noops": self.noops, "found": self.demonstration is not None,
                "frames_emulated": self.frames_emulated, "frames_to_goal": self.frames_to_goal,
                "wall_seconds": round(self.wall_seconds, 1), "iterations": self.iterations, "cells": self.cells,
                "furthest_x": self.furthest_x, "repairs": self.repairs,
                "steps": None if self.demonstration is None else len(self.demonstration.actions)}


class Explorer:
    """Go-Explore on one stage from a fixed no-op start; see the module docstring."""

    def __init__(self, stage: str, noops: int = 30, seed: int = 0, cell_width: int = 24, y_bands: int = 6,
                 explore_steps: int = 60, patience: int = 25, repeat_probability: float = 0.8,
                 down_probability: float = 0.15, down_steps: int = 3, probe_pipes: bool = True,
                 prefer_coins: bool = False, ledges: bool = False, never_down: bool = False):
        world, level = parse_stage(stage)
        self.stage = f"{world}-{level}"
        self.target = (world - 1, level - 1)  # as the RAM holds them
        self.noops = int(noops)
        self.cell_width, self.y_bands = cell_width, y_bands
        self.explore_steps, self.patience = explore_steps, patience
        self.repeat_probability = repeat_probability
        self.never_down = never_down
        self.down_probability, self.down_steps = (0.0 if never_down else down_probability), down_steps
        self.probe_pipes = probe_pipes and not never_down
        self.prefer_coins = prefer_coins
        self.ledges = ledges
        self.rng = np.random.default_rng(seed)
        self.env = demonstration_env(self.stage)
        self._coords = np.zeros((1, 2), np.float32)
        combos = [tuple(combo) for combo in DEMONSTRATION_BUTTONS]
        weights = np.array([0.0 if never_down and combo == ("down",) else EXPLORATION_WEIGHTS[combo]
                            for combo in combos])
        self._action_weights = weights / weights.sum()
        self._down = combos.index(("down",))
        self._walk = {side: combos.index((side,)) for side in ("right", "left")}
        self._jump = {side: combos.index((side, "A")) for side in ("right", "left")}
        self._noop = combos.index(("NOOP",))
        self._probed: set[tuple[int, int, int]] = set()
        self.archive: dict[tuple, CellRecord] = {}
        self.frames = 0

    # --- cells -----------------------------------------------------------------------------------

    def cell(self) -> tuple | None:
        """The current cell, or None outside the target stage (a skip zone led elsewhere) or in a transition."""
        ram = self.env.ram
        if (int(ram[_WORLD]), int(ram[_STAGE])) != self.target or ram[_X_HIGH] >= _MAX_PAGE:
            return None
        x = self._x()
        viewport = int(ram[_Y_VIEWPORT])
        band = int(ram[_Y]) * self.y_bands // 256 if viewport == 1 else (-1 if viewport == 0 else self.y_bands)
        if self.ledges and viewport == 1 and ram[_FLOAT_STATE] == 0:
            band = self.y_bands + 1 + int(ram[_Y]) // 16  # the block row Mario stands on, apart from the bands
        return (int(ram[_AREA_POINTER]), x // self.cell_width, band, int(ram[_POWERUP]) > 0)

    def _x(self) -> int:
        ram = self.env.ram
        return int(ram[_X_HIGH]) * 256 + int(ram[_X_LOW])

    def _coins_here(self) -> int:
        """Coins of the sequence the archive keeps for the current cell (-1 for a cell not in it)."""
        record = self.archive.get(self.cell())
        return -1 if record is None else record.coins

    def _visit(self, actions: bytes) -> bool:
        """Add or improve the current cell with ``actions``; True when the archive changed."""
        cell = self.cell()
        if cell is None:
            return False
        record = self.archive.get(cell)
        coins = int(self.env.ram[_COINS]) if self.prefer_coins else 0
        if record is None:
            self.archive[cell] = CellRecord(actions, self.env.clone_state(), self._x(), coins, seen=1)
            return True
        record.seen += 1
        if (coins, -len(actions)) > (record.coins, -len(record.actions)):
            record.actions, record.snapshot, record.coins = actions, self.env.clone_state(), coins
            return True
        return False

    # --- pipes ---------------------------------------------------------------------------------

    def _probe_pipe(self, actions: bytes) -> bool:
        """Where Mario stands somewhere new, try holding down: is this the top of a pipe one can enter?

        Random buttons seldom press down at the few pixels of a pipe top that take Mario in (the
        castle 8-4 cannot be finished otherwise), so every standing place is tried once, for two
        steps. Where a pipe was entered, the cell it led to is kept; the game then goes back to where
        the probe started. True when a pipe was entered.
        """
        ram = self.env.ram
        if ram[_FLOAT_STATE] != 0:
            return False
        key = (int(ram[_AREA_POINTER]), self._x() // 4, int(ram[_Y]))
        if key in self._probed:
            return False
        self._probed.add(key)
        before = self.env.clone_state()
        area, x = int(ram[_AREA_POINTER]), self._x()
        probe = bytearray(actions)
        entered = False
        for _ in range(2):
            terminated, _ = self._step_counted(self._down)
            probe.append(self._down)
            if terminated:
                break
            # the environment skips the pipe's animation, so one step lands in the next area
            if int(ram[_AREA_POINTER]) != area or abs(self._x() - x) > _PIPE_JUMP:
                entered = True
                self._visit(bytes(probe))
                break
        self.env.restore_state(before)
        return entered

    def _probe_jumps(self, actions: bytes) -> bool:
        """From a ledge Mario stands on for the first time, try a few jumps to either side.

        A block or ledge that is the only step up to the next (8-4's hidden block below a floating pipe)
        is reached by one exact jump, which random buttons rarely chain with the jump before it. Every
        landing place is kept and probed for a pipe; the game then goes back to where the probe
        started. True when the archive changed.
        """
        before = self.env.clone_state()
        changed = False
        for side, wait, hold in _LEDGE_JUMPS:
            probe = bytearray(actions)
            for step in range(wait + hold + _LANDING_STEPS):
                action = self._noop if step < wait else self._jump[side] if step < wait + hold else self._walk[side]
                terminated, _ = self._step_counted(action)
                probe.append(action)
                if terminated:
                    break
                changed |= self._visit(bytes(probe))
                if step >= wait + hold and self.env.ram[_FLOAT_STATE] == 0:  # landed
                    if self.probe_pipes:
                        changed |= self._probe_pipe(bytes(probe))
                    break
            self.env.restore_state(before)
        return changed

    # --- selection -------------------------------------------------------------------------------

    def _choose(self) -> tuple:
        """A cell to explore from: rarely chosen cells, and above all those at their area's right edge."""
        cells = list(self.archive)
        edge: dict[int, int] = {}
        for area, column, _, _ in cells:
            edge[area] = max(edge.get(area, 0), column)
        weights = np.empty(len(cells))
        for i, cell in enumerate(cells):
            record = self.archive[cell]
            behind = edge[cell[0]] - cell[1]
            frontier = 1.0 + 10.0 * math.exp(-behind / 2.0)
            weights[i] = frontier / math.sqrt(1.0 + record.chosen) + 0.1 / math.sqrt(1.0 + record.seen)
        return cells[int(self.rng.choice(len(cells), p=weights / weights.sum()))]

    # --- the search ------------------------------------------------------------------------------

    def _step_counted(self, action: int):
        """One env step of button ``action``, adding the frames it emulated to ``self.frames``."""
        frame_before = self.env.frame_index
        _, _, terminated, _, info = self.env.step({"buttons": action, "coords": self._coords})
        self.frames += info["frame_index"] - frame_before
        return terminated, info

    def _reset(self) -> None:
        _, info = self.env.reset(options={"noops": self.noops})
        self.frames += info["frame_index"]

    def _goal(self, info: dict) -> bool:
        return bool(info["flag_get"]) and (info["world"] - 1, info["stage"] - 1) == self.target

    def seed_archive(self, demonstration: Demonstration) -> bytes | None:
        """Follow a known sequence from this explorer's start, adding its cells; the sequence if it reaches the goal.

        Used to start from another no-op start's demonstration: where it still works it is kept whole,
        and where it dies the archive already reaches that far.
        """
        self._reset()
        self._visit(b"")
        actions = bytearray()
        for action in demonstration.actions:
            terminated, info = self._step_counted(int(action))
            actions.append(int(action))
            if terminated:
                return bytes(actions) if self._goal(info) else None
            self._visit(bytes(actions))
        return None

    def run(self, max_frames: int = 3_000_000, max_seconds: float = float("inf"),
            warm_start: list[Demonstration] = (), progress: Callable[[ExplorationResult], None] | None = None
            ) -> ExplorationResult:
        """Explore until a sequence reaches the goal, ``max_frames`` NES frames or ``max_seconds`` pass."""
        started = time.perf_counter()
        found: bytes | None = None
        frames_to_goal = None
        history: list[tuple[int, int, int]] = []
        for demonstration in warm_start:
            found = self.seed_archive(demonstration)
            if found is not None:
                frames_to_goal = self.frames
                break
        if not self.archive:
            self._reset()
            self._visit(b"")
        iterations = 0
        combos = len(self._action_weights)
        demonstration = None
        self.repairs = 0
        while demonstration is None:
            while found is None and self.frames < max_frames and time.perf_counter() - started < max_seconds:
                iterations += 1
                found = self._explore_once(combos)
                if found is not None:
                    frames_to_goal = self.frames
                if iterations % 50 == 0 or found is not None:
                    history.append((self.frames, len(self.archive), max(r.x for r in self.archive.values())))
                    if progress is not None:
                        progress(self._result(None, frames_to_goal, started, iterations, history))
            if found is None:
                break
            candidate = Demonstration(stage=self.stage, noops=self.noops, actions=np.frombuffer(found, np.uint8))
            outcome = replay(candidate, self.env, keep_states=True)
            if outcome.reached_goal:
                candidate.goal_x = outcome.final_x
                describe_route(candidate, outcome.states, self.env)
                demonstration = candidate
                break
            # nes-py's snapshots are not exact through the game's lag frames (busy scenes), so states
            # restored many times can drift from what their sequences give from reset. Start again from
            # the cells the found sequence really passes through: a true path, mostly as far as the goal.
            self.repairs += 1
            self.archive.clear()
            self._probed.clear()
            found = self.seed_archive(candidate)
            frames_to_goal = self.frames if found is not None else None
        return self._result(demonstration, frames_to_goal, started, iterations, history)

    def _explore_once(self, combos: int) -> bytes | None:
        """One iteration: pick a cell, go there, press random buttons; the sequence if it reached the goal."""
        cell = self._choose()
        record = self.archive[cell]
        record.chosen += 1
        self.env.restore_state(record.snapshot)
        actions = bytearray(record.actions)
        action = int(self.rng.choice(combos, p=self._action_weights))
        # Pipes are entered by holding down while standing on them, which random buttons rarely do
        # at the right place: so some explorations start by pressing down where their cell is.
        forced_down = self.down_steps if self.rng.random() < self.down_probability else 0
        since_new = 0
        for step in range(self.explore_steps):
            if step < forced_down:
                action = self._down
            elif self.rng.random() > self.repeat_probability:
                action = int(self.rng.choice(combos, p=self._action_weights))
            terminated, info = self._step_counted(action)
            actions.append(action)
            if terminated:
                return bytes(actions) if self._goal(info) else None
            cells_before = len(self.archive)
            coins_before = self._coins_here() if self.ledges else 0
            changed = self._visit(bytes(actions))
            # a new ledge, or a place where more coins than before mean a hidden block was just opened
            if (self.ledges and self.env.ram[_FLOAT_STATE] == 0
                    and (len(self.archive) > cells_before or self._coins_here() > coins_before)):
                changed |= self._probe_jumps(bytes(actions))
            if changed | (self.probe_pipes and self._probe_pipe(bytes(actions))):
                since_new = 0
            else:
                since_new += 1
                if since_new >= self.patience:
                    break
        return None

    def _result(self, demonstration, frames_to_goal, started, iterations, history) -> ExplorationResult:
        return ExplorationResult(self.stage, self.noops, demonstration, self.frames, frames_to_goal,
                                 time.perf_counter() - started, iterations, len(self.archive),
                                 max((r.x for r in self.archive.values()), default=0), list(history),
                                 getattr(self, "repairs", 0))

    def close(self) -> None:
        self.env.close()
