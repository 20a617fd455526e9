"""HeuristicPlayer: a RAM-aware runner that jumps walls, pipes, stairs, gaps and enemies.

It reads only the observation's ``state`` / ``state_mask`` (the RAM state vector of
``sgaps_env.STATE_FIELDS``) and never touches the emulator. See ``HeuristicPlayer`` for the rules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgaps_env.buttons import resolve_button_set
from sgaps_env.state import ENEMY_SLOTS, STATE_INDEX, field_int, field_value

#: Enemy-slot object types that never hurt Mario: lifts and platforms (0x24-0x2C), the power-up,
#: vine, flags, jump spring, warp-zone marker and the retainer.
HARMLESS_TYPES = frozenset({0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C,
                            0x2E, 0x2F, 0x30, 0x31, 0x32, 0x34, 0x35})
#: Walkers that move left at about 2.5 px per step (0.6 px per frame) after they appear: koopas,
#: buzzy beetle, goomba and the hopping green paratroopa.
WALKER_TYPES = frozenset({0x00, 0x01, 0x02, 0x03, 0x06, 0x0E})
PIRANHA_PLANT = 0x0D
#: Player states (RAM 0x000E) in which Mario is under control; other states (dying, entering a
#: pipe, sliding down the flagpole, growing) ignore the controller.
NORMAL_PLAYER_STATE = 8

#: Take-off x speed (RAM units, 48 is a full run) from which a jump keeps accelerating to running
#: speed in the air: below it the air speed stays at walking speed and jumps are about half as long.
RUNNING_TAKEOFF_SPEED = 28.0


def jump_length(x_speed: float, hold_steps: int) -> float:
    """Level pixels from take-off to landing on flat ground, holding right+B (measured on 4-1, frame_skip 4).

    A running take-off (``x_speed >= RUNNING_TAKEOFF_SPEED``) spans 132 px with A held 5 steps and
    156 px with 8; a standing one 54 and 61 px, growing by about 1 px per unit of take-off speed.
    """
    long = hold_steps >= 8
    if x_speed >= RUNNING_TAKEOFF_SPEED:
        return 156.0 if long else 132.0
    return (61.0 if long else 54.0) + 1.2 * max(x_speed, 0.0)


@dataclass
class _Slot:
    """What the player remembers about one enemy slot between steps."""

    type: int | None = None
    y: float = 0.0
    y_max: float = 0.0  # lowest point seen (the game's y grows downwards): where a piranha plant hides
    moving: bool = False  # its y changed since the last step
    level_x: float | None = None  # level x implied by the state's screen x (screen x + camera x)
    trust: int = 0  # consecutive steps on which that level x moved like an enemy does
    estimate: float | None = None  # dead-reckoned level x of a walker or piranha plant, from where it appeared
    speed: float = 0.0  # its assumed x speed, px per step


@dataclass
class _Enemy:
    """An active, harmful enemy as seen this step, relative to Mario (screen pixels)."""

    type: int
    dx: float | None  # enemy x - Mario x (None when unknown); positive is ahead
    dy: float  # enemy y - Mario y; positive is below
    moving: bool  # its y changed since the last step
    up: bool  # for a piranha plant: out of its pipe (or on its way)


class HeuristicPlayer:
    """Runs right holding B and jumps over what it infers from the RAM state vector.

    Reads only ``observation["state"]`` and ``observation["state_mask"]``; no emulator access,
    and no memory across episodes (``reset`` clears everything but the jitter generator). The
    state vector has no tile data, so obstacles are inferred from behaviour. Rules, by priority:

    * **out of control** (``player_state`` not 8: dying, in a pipe, on the flagpole): right+B.
    * **A is released** for a step before every new jump (the game only jumps on a fresh press),
      and a jump that comes down early (a ceiling) lets go of A at once.
    * **walls, pipes, stairs**: on the ground, right held, yet the level x did not advance or the
      x speed collapsed -> a full jump (A held ``jump_hold`` steps: 64 px high standing, 85 px
      running). Blocked again more than ``backoff_after`` times in a row -> walk left
      ``backoff_steps`` steps for a run-up; after two run-ups at the same wall it is taken for a
      dead end (a ledge under a wall up to the ceiling): walk left up to ``escape_steps`` steps or
      until Mario has dropped to a lower floor.
    * **piranha plants** (from their y: a plant in its pipe has a y that is a multiple of 16, one
      fully out 24 px less): while one is out or moving within a hop's length (or at an unknown
      x), Mario does not hop, jumps at enemies only low (A for one step) and, when blocked (at its
      pipe), keeps pressing against the pipe until the plant is back in.
    * **enemies**: a harmful enemy ahead within reach (16 px plus ``enemy_reach`` steps of closing
      speed) at about Mario's height -> a full jump. An enemy's ``enemy{k}_screen_x`` is believed
      only once it has moved like an enemy for two steps (the level x it implies, screen x +
      camera x, changing by at most 8 px per step) and, if the enemy's position is being reckoned,
      agrees with the reckoning within 32 px (see the note below). Goombas, koopas, buzzy beetles
      and hopping paratroopas that appear while the screen scrolls are dead-reckoned: they appear
      about 40 px past the right edge and walk left 2.5 px per step; piranha plants appear about
      95 px past it and stay.
    * **gaps and pits** cannot be seen coming, so Mario *hops*: on the ground at running speed
      (``x_speed >= hop_speed``, by default the 28 from which a jump keeps accelerating in the
      air) he jumps again at once, holding A ``hop_hold`` steps. Such a jump spans 132 px (156 px
      with A held 8 steps) with one to five frames on the ground in between, so most 2- and
      3-tile gaps are cleared and most walkers stomped or cleared; but which gaps are cleared
      depends on where the hops happen to land: luck per gap, not sight of it.
    * **jitter**: with probability ``jitter`` per decision on the ground, Mario pauses (NOOP) for
      1-3 steps: variety for recorded data, drawn from the player's own generator seeded by
      ``seed`` / ``reset(seed)``. Everything else is deterministic: the same seed gives the same
      actions on the same observations.

    Note on ``enemy{k}_screen_x``: in the SMB RAM map the bytes behind it (0x03AE + k) are the
    screen x of the enemy the game processed last (0x03AE) and of fireballs, bubbles and blocks
    (0x03AF-0x03B2), not the x of slot k; the values are often stale or another object's. The
    checks above keep the player from acting on most of them, and let it use true positions
    should the state vector carry them.

    ``button_set`` must contain ``right+B`` and ``right+A+B`` (true of "simple", "right_only" and
    "complex"); ``NOOP`` is used for pauses and ``left`` for backing off when the set has them.
    ``last_reason`` says why the last action was chosen.
    """

    name = "heuristic"

    def __init__(self, button_set: str | list[list[str]] = "simple", seed: int | None = None, jitter: float = 0.01,
                 jump_hold: int = 8, hop_hold: int = 5, hop_speed: float = RUNNING_TAKEOFF_SPEED,
                 enemy_reach: float = 5.0, backoff_after: int = 2, backoff_steps: int = 6, escape_steps: int = 40,
                 dead_reckoning: bool = True):
        combos = resolve_button_set(button_set)
        try:
            self._run = combos.index(("right", "B"))
            self._jump = combos.index(("right", "A", "B"))
        except ValueError:
            raise ValueError("HeuristicPlayer needs the combos right+B and right+A+B in the button set") from None
        self._noop = combos.index(("NOOP",)) if ("NOOP",) in combos else self._run
        self._left = combos.index(("left",)) if ("left",) in combos else None
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        if jump_hold < 1 or hop_hold < 1:
            raise ValueError(f"jump_hold and hop_hold must be at least 1 step, got {jump_hold} and {hop_hold}")
        self.jitter = float(jitter)
        self.jump_hold = int(jump_hold)
        self.hop_hold = int(hop_hold)
        self.hop_speed = float(hop_speed)
        self.enemy_reach = float(enemy_reach)
        self.backoff_after = int(backoff_after)
        self.backoff_steps = int(backoff_steps)
        self.escape_steps = int(escape_steps)
        self.dead_reckoning = bool(dead_reckoning)
        self._rng = np.random.default_rng(seed)
        self.reset()

    # --- episode state ---------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Start an episode; ``seed`` reseeds the jitter generator (``None`` keeps it running)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._slots = [_Slot() for _ in range(ENEMY_SLOTS)]
        self._last_x: float | None = None
        self._last_vx = 0.0
        self._last_cam: float | None = None
        self._hold = 0  # steps A is still to be held
        self._held = 0  # steps A has been held in the current jump
        self._a_down = False  # A was pressed on the last step
        self._pushed_right = False  # the last action held right (so a stalled x means blocked)
        self._stalled = 0  # consecutive grounded steps without progress
        self._blocked_jumps = 0  # jumps at the same obstacle
        self._back = 0  # steps left of backing off
        self._wall_x: float | None = None  # level x of the last wall backed off from
        self._backoffs_here = 0  # back-offs from that wall
        self._escape_y: float | None = None  # while escaping a dead end: Mario's screen y when it began
        self._pause = 0  # steps left of a jitter pause
        self.last_reason = "start"  # why the last action was chosen (for debugging and tests)

    # --- reading the state -----------------------------------------------------------------------

    def _enemies(self, state: np.ndarray, mask: np.ndarray, mario_x: float, mario_sx: float, mario_sy: float,
                 cam: float, cam_moved: bool) -> list[_Enemy]:
        """Update the per-slot memory and list the active harmful enemies relative to Mario."""
        enemies = []
        for index, slot in enumerate(self._slots):
            if not state[STATE_INDEX[f"enemy{index}_active"]] > 0.5:
                self._slots[index] = _Slot()
                continue
            etype = field_int(state, f"enemy{index}_type")
            ey = field_value(state, f"enemy{index}_screen_y") if mask[STATE_INDEX[f"enemy{index}_screen_y"]] else slot.y
            if slot.type != etype:  # a new object in this slot
                slot = self._slots[index] = _Slot(type=etype, y=ey, y_max=ey)
                if self.dead_reckoning and cam_moved and etype in WALKER_TYPES:
                    slot.estimate, slot.speed = cam + 296.0, -2.5  # appear about 40 px past the right edge
                elif self.dead_reckoning and cam_moved and etype == PIRANHA_PLANT:
                    slot.estimate, slot.speed = cam + 350.0, 0.0  # appear about 95 px past it, in their pipe
            slot.moving = ey != slot.y
            slot.y = ey
            slot.y_max = max(slot.y_max, ey)
            if slot.estimate is not None:
                slot.estimate += slot.speed

            # the screen x is trusted only when the level x it implies moves like an enemy's
            x_index = STATE_INDEX[f"enemy{index}_screen_x"]
            dx = None
            if mask[x_index]:
                level_x = field_value(state, f"enemy{index}_screen_x") + cam
                if slot.level_x is None or abs(level_x - slot.level_x) > 8:
                    slot.trust = 0
                elif cam_moved or level_x != slot.level_x:
                    slot.trust += 1
                slot.level_x = level_x
                # ... and agrees with where the enemy was reckoned to be, if it was
                if slot.trust >= 2 and (slot.estimate is None or abs(level_x - slot.estimate) < 32):
                    dx = level_x - cam - mario_sx
                    if slot.estimate is not None:
                        slot.estimate = level_x
            else:
                slot.level_x, slot.trust = None, 0
            if dx is None and slot.estimate is not None:
                dx = slot.estimate - mario_x
            if etype in HARMLESS_TYPES:
                continue
            # a piranha plant waits still only when fully in its pipe or fully out; pipe tops are on the
            # 16-px tile grid, so in its pipe its y is a multiple of 16, and 24 px higher when out
            up = etype == PIRANHA_PLANT and (slot.moving or ey < slot.y_max - 1 or round(ey) % 16 != 0)
            enemies.append(_Enemy(etype, dx, ey - mario_sy, slot.moving, up))
        return enemies

    # --- acting ----------------------------------------------------------------------------------

    def _press(self, hold: int, reason: str) -> int:
        """Press A (with right+B) now and keep it held for ``hold`` steps in all."""
        self._hold, self._held = hold - 1, 1
        self._a_down = self._pushed_right = True
        self.last_reason = reason
        return self._jump

    def _button(self, button: int, reason: str) -> int:
        """Any button combination without A."""
        self._a_down = False
        self._pushed_right = button == self._run
        self.last_reason = reason
        return button

    def act(self, observation, info) -> int:
        """The button index for the next step (``info`` is not used)."""
        state, mask = observation["state"], observation["state_mask"]
        x, sx = field_value(state, "player_level_x"), field_value(state, "player_screen_x")
        sy = field_value(state, "player_screen_y")
        vx, cam = field_value(state, "player_x_speed"), field_value(state, "camera_x")
        on_ground = field_int(state, "player_float_state") == 0
        cam_moved = self._last_cam is not None and abs(cam - self._last_cam) >= 1
        self._last_cam = cam
        enemies = self._enemies(state, mask, x, sx, sy, cam, cam_moved)

        progress = None if self._last_x is None else x - self._last_x
        last_vx, self._last_vx = self._last_vx, vx
        self._last_x = x
        if on_ground:
            # blocked: right was held, yet the level x did not advance or the speed collapsed
            crashed = vx < 16 and vx < last_vx - 12
            if self._pushed_right and ((progress is not None and progress < 1) or crashed):
                self._stalled += 1
            else:
                self._stalled = 0
            if progress is not None and progress > 4:
                self._blocked_jumps = 0

        if field_int(state, "player_state") != NORMAL_PLAYER_STATE:  # dying, in a pipe, on the flagpole...
            self._hold = self._back = self._pause = 0
            return self._button(self._run, "not in control")
        if self._back > 0 and self._left is not None:
            if self._escape_y is not None and on_ground and sy > self._escape_y + 16:
                self._back, self._escape_y = 0, None  # dropped to a lower floor: try it from there
            else:
                self._back -= 1
                return self._button(self._left, "back off" if self._escape_y is None else "escape a dead end")
        self._escape_y = None
        if self._hold > 0 and self._a_down:
            if on_ground and self._held >= 2:
                self._hold = 0  # landed already (a ceiling cut the jump short): let go of A
            else:
                self._hold -= 1
                self._held += 1
                self.last_reason = "hold A"
                return self._jump
        if not on_ground:
            self._hold = 0
            return self._button(self._run, "in the air")
        if self._a_down:
            return self._button(self._run, "release A")

        # piranha plants out of their pipes (at an unknown x: anywhere) within a hop (then no hopping,
        # and waiting at a pipe) or within a long jump (then enemies are jumped low)
        def plant_within(distance: float) -> bool:
            return any(e.up and (e.dx is None or -24 < e.dx < distance + 16) for e in enemies)

        piranha_up = plant_within(jump_length(vx, self.hop_hold))
        piranha_in_reach = plant_within(jump_length(RUNNING_TAKEOFF_SPEED, 8))
        threat = None
        for enemy in enemies:
            if enemy.type == PIRANHA_PLANT or enemy.dx is None:
                continue
            reach = max(28.0, 16.0 + self.enemy_reach * (max(vx, 0.0) / 4 + 3))
            if -12 < enemy.dx < reach and -40 < enemy.dy < 32:
                threat = enemy
                break

        if self._pause > 0 and threat is None:
            self._pause -= 1
            return self._button(self._noop, "jitter pause")
        self._pause = 0
        if self._stalled >= 1:
            if piranha_up:
                return self._button(self._run, "wait for the piranha plant")  # pressed against its pipe
            self._blocked_jumps += 1
            if self._blocked_jumps > self.backoff_after and self._left is not None:
                self._blocked_jumps = 0
                same_wall = self._wall_x is not None and abs(x - self._wall_x) < 16
                self._backoffs_here = self._backoffs_here + 1 if same_wall else 1
                self._wall_x = x
                if self._backoffs_here > 2:  # a run-up did not help twice: a dead end, go back until lower
                    self._back, self._escape_y, self._backoffs_here = self.escape_steps - 1, sy, 0
                    return self._button(self._left, "escape a dead end")
                self._back = self.backoff_steps - 1
                return self._button(self._left, "back off")
            return self._press(self.jump_hold, "blocked")
        if threat is not None:  # low while a piranha plant is up, so as not to jump into it
            return self._press(1 if piranha_in_reach else self.jump_hold, "enemy ahead")
        if piranha_up:
            return self._button(self._run, "piranha plant up: no hop")
        if self.jitter and self._rng.random() < self.jitter:
            self._pause = int(self._rng.integers(0, 3))
            return self._button(self._noop, "jitter pause")
        if vx >= self.hop_speed:
            return self._press(self.hop_hold, "hop")
        return self._button(self._run, "run")
