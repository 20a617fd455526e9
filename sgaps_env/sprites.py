"""Where the things that move are: the status bar and the sprite boxes the state vector gives.

Super Mario Bros draws a frame as a level background that is a function of the camera position,
a status bar (HUD) fixed on screen, and a few sprites whose positions are all in RAM. This module
is the one owner of that geometry; the temporal memory, the reconstructor's sprite layer, the
foreground metric and the RAM-guided sampler import it.

Offsets were measured on recorded 1-1 play against a level map memorised by camera x (pixels that
differ from the map, relative to the RAM position): small Mario covers x in [px, px+16) and y in
[py+17, py+33), big Mario y in [py+1, py+33); a Goomba x in [ex, ex+17), y in [ey+9, ey+25); a
Koopa y from ey+2. The boxes below add a pixel or two of margin. A fire bar's RAM position is its pivot
block; its balls, up to 44 px from the pivot's centre (92 for the long bar), turn with the spin step the
state gives, so its box is the square they sweep. The power-up object (RAM object slot 5) is boxed like
an enemy.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH
from sgaps_env.state import ENEMY_SLOTS, STATE_INDEX, field_int, field_value

#: Rows ``0 .. HUD_ROWS-1`` are the status bar: fixed on screen, never scrolled with the level.
HUD_ROWS = 32

#: Poses of the learned sprite layer. The player: fire palette x facing left x graphics frame (RAM 0x06D5 / 8,
#: which also tells small from big); then the enemies: area type (it sets their palette) x object type.
PLAYER_FRAMES = 32
PLAYER_POSES = 2 * 2 * PLAYER_FRAMES
AREA_TYPES = 4
ENEMY_TYPES = 64
POSE_COUNT = PLAYER_POSES + AREA_TYPES * ENEMY_TYPES

#: Enemy object types that are fire bars (0x1B-0x1E spin six balls around their pivot block, 0x1F twelve).
FIREBAR_TYPES = range(0x1B, 0x20)
LONG_FIREBAR = 0x1F
#: A fire bar's spin steps (the state's ``enemy{slot}_y_speed``: the bar's angle in 32 steps).
FIREBAR_SPINS = 32
#: How far a fire bar's balls reach from the centre of its pivot (the RAM position + 4 px): six 8-px balls
#: end 44 px out, twelve 92 px.
FIREBAR_REACH = {False: 48, True: 96}
#: The ball at a fire bar's pivot, which never moves: screen rows ``[y + 1, y + 9)`` and columns ``[x, x + 8)`` of
#: its RAM position ``(x, y)`` (as offsets ``(top, left, height, width)``). It sits on the pivot block in every
#: frame, so votes for the level's most frequent colour take it for background.
FIREBAR_PIVOT_BALL = (1, 0, 8, 8)
#: The power-up object (RAM object slot 5) is drawn with poses of its own among the enemy types' (object ids
#: 0x3C-0x3F are not enemy types the game uses): this id plus the power-up type (0 mushroom, 1 fire flower,
#: 2 star, 3 1-up).
POWERUP_POSE_TYPE = 0x3C

#: Animation phases of the frame counter (:func:`animation_phase`).
ANIMATION_PHASES = 8
#: An object's moving direction as :class:`SpriteBox` holds it: 0 not known (the player, the power-up, fire bars,
#: recordings without the state's ``enemy{slot}_moving_dir``), 1 right, 2 left.
MOVING_DIRECTIONS = 3
#: An enemy's motion over the last step as :class:`SpriteBox` holds it (:func:`with_motion`): 0 not known, then its
#: level x changed by -3 or less, by -2 or -1, not at all, by 1 or 2, by 3 or more pixels. SMB draws an object where
#: it stood a frame before the RAM's position, so how it moved says in which column of its window it shows.
MOTIONS = 6
#: What a sprite appearance's prior is conditioned on (:func:`appearance_context`): animation phase x direction x
#: motion.
APPEARANCE_CONTEXTS = ANIMATION_PHASES * MOVING_DIRECTIONS * MOTIONS

#: The window (relative to an object's RAM position) that a sprite template covers: x from -4, y from -4.
TEMPLATE_OFFSET = (-4, -4)
TEMPLATE_SIZE = (40, 24)  # (height, width)


@dataclass(frozen=True)
class SpriteBox:
    """One on-screen object: ``kind`` is ``"player"``, ``"enemy"``, ``"firebar"`` or ``"powerup"``; the box is
    ``[x0, x1) x [y0, y1)`` in screen pixels (not clipped to the frame); ``(x, y)`` is the RAM position;
    ``pose`` indexes the learned sprite templates. A fire bar's box holds every angle of its balls, and
    ``spin`` is its spin step 0-31 (-1 for other objects, or when the state lacks it). ``direction`` is an
    enemy's moving direction (:data:`MOVING_DIRECTIONS`: 1 right, 2 left, 0 when not known), ``motion`` how far it
    moved over the last step (:data:`MOTIONS`, set by :func:`with_motion`; 0 when not known)."""

    kind: str
    slot: int
    x: int
    y: int
    x0: int
    y0: int
    x1: int
    y1: int
    pose: int
    spin: int = -1
    direction: int = 0
    motion: int = 0


def _valid(state_mask: np.ndarray, name: str) -> bool:
    """Whether field ``name`` holds a value in this state (enemy slots are masked while inactive)."""
    return bool(state_mask[STATE_INDEX[name]] > 0)


#: Steps of SMB's palette rotation (?-blocks and coins blink through them).
ROTATION_PHASES = 6
#: ``(ROTATION_PHASES, 3) uint8``: the RGB colour the blinking palette entry shows at each step of
#: :func:`rotation_phase` (NES colours $17, $27, $27, $27, $17, $07), measured on the status bar's coin over
#: every area type of worlds 1-4 (``tests/test_tile_reconstructor.py`` checks it on a recording).
ROTATION_COLOURS = np.array([[0xE4, 0x5C, 0x10], [0xFC, 0xA0, 0x44], [0xFC, 0xA0, 0x44], [0xFC, 0xA0, 0x44],
                             [0xE4, 0x5C, 0x10], [0x88, 0x14, 0x00]], np.uint8)


def rotation_phase(state: np.ndarray, state_mask: np.ndarray | None = None) -> int | None:
    """The palette rotation step 0-5 this frame is drawn with, or None when the state lacks it."""
    index = STATE_INDEX["color_rotation"]
    if (state_mask is not None and state_mask[index] <= 0) or state[index] < 0:
        return None
    return min(ROTATION_PHASES - 1, field_int(state, "color_rotation"))


def camera_x(state: np.ndarray) -> int:
    """The camera's left edge in level pixels (world x of screen column 0); negative left of the level's start.

    RAM holds it as page * 256 + x in 16 bits; a page of 0x80 or more is a camera left of page 0 (4-4's maze
    sets page 0xFF while it rewinds the level), read as a negative x rather than as a level 256 pages wide.
    """
    value = field_int(state, "camera_x")
    return value - 65536 if value >= 32768 else value


#: Names of the area types (RAM 0x074E; the state's ``area_type``), which set an area's palettes.
AREA_TYPE_NAMES = ("water", "ground", "underground", "castle")


def animation_phase(state: np.ndarray, state_mask: np.ndarray) -> int:
    """Bits 2-4 of the frame counter (the state's ``frame_phase``), 0-7, or 0 when the state lacks it: SMB's
    enemies step through their walking frames on the frame counter, so which appearance a sprite shows depends
    on it. (Bits 2-4 beat bits 3-4, 2-5 and all five on worlds 1-4 recordings no codebook was counted from.)"""
    if state_mask[STATE_INDEX["frame_phase"]] <= 0:
        return 0
    return (field_int(state, "frame_phase") >> 2) % ANIMATION_PHASES


def appearance_context(box: SpriteBox, state: np.ndarray, state_mask: np.ndarray) -> int:
    """What the prior over a sprite's appearances is conditioned on, 0 to ``APPEARANCE_CONTEXTS - 1``: the
    :func:`animation_phase`, the object's moving direction and its motion over the last step. SMB draws a walking
    Goomba flipped every 8 frames relative to the way it moves, so phase and direction together say which side it
    faces (the phase alone leaves it a coin toss), and it draws an object where it stood a frame before, so the
    motion says in which column."""
    return animation_phase(state, state_mask) + ANIMATION_PHASES * (box.direction + MOVING_DIRECTIONS * box.motion)


def with_motion(boxes: list[SpriteBox], state: np.ndarray, previous_state: np.ndarray | None,
                previous_mask: np.ndarray | None) -> list[SpriteBox]:
    """``boxes`` (:func:`sprite_boxes` of ``state``) with each enemy's ``motion``: how far its level x moved since
    ``previous_state`` (the step before), where the same slot held the same kind of object then; unchanged
    without a previous state."""
    if previous_state is None or previous_mask is None:
        return boxes
    before = {(box.slot, box.pose): box.x for box in sprite_boxes(previous_state, previous_mask) if box.kind == "enemy"}
    scrolled = camera_x(state) - camera_x(previous_state)
    moved = []
    for box in boxes:
        x = before.get((box.slot, box.pose)) if box.kind == "enemy" else None
        if x is None:
            moved.append(box)
            continue
        shift = box.x + scrolled - x
        moved.append(replace(box, motion=1 if shift <= -3 else 2 if shift < 0 else 3 if shift == 0 else
                             4 if shift < 3 else 5))
    return moved


def area_type(state: np.ndarray) -> int:
    """The area type 0-3 (an index of :data:`AREA_TYPE_NAMES`)."""
    return min(AREA_TYPES - 1, max(0, field_int(state, "area_type")))


def area_key(state: np.ndarray) -> str:
    """``"W-S-A-type"`` (1-based world and stage, 0-based area, the area type's name): the level area a frame's
    background belongs to.

    The area number alone (RAM 0x0760) stays the same in a stage's sub-areas (1-1's underground bonus room
    has area 0 and starts at camera x 0, like 1-1 itself); the area type tells them apart, so each has its
    own memory and atlas canvas. Keys of older checkpoints lack the type: see :func:`legacy_area_key`.
    """
    world = field_int(state, "world") + 1
    stage = field_int(state, "stage") + 1
    area = field_int(state, "area")
    return f"{world}-{stage}-{area}-{AREA_TYPE_NAMES[area_type(state)]}"


def legacy_area_key(key: str) -> str:
    """``"W-S-A"``: an :func:`area_key` without its area type, as checkpoints before the type was added hold them."""
    return "-".join(key.split("-")[:3])


def key_stage(key: str) -> str:
    """``"W-S"``: the stage of an :func:`area_key` (or a legacy one)."""
    return "-".join(key.split("-")[:2])


def sprite_boxes(state: np.ndarray, state_mask: np.ndarray) -> list[SpriteBox]:
    """The player (when on screen), every active enemy slot and the power-up, as :class:`SpriteBox` es."""
    boxes = []
    if _valid(state_mask, "player_screen_x") and field_int(state, "player_y_viewport") == 1:
        x = field_int(state, "player_screen_x")
        y = field_int(state, "player_screen_y")
        powerup = field_int(state, "powerup")  # 0 small, 1 big, 2 fire
        big, fire = powerup > 0, powerup == 2
        facing_left = field_int(state, "player_facing") == 2
        frame = min(PLAYER_FRAMES - 1, max(0, field_int(state, "player_sprite") // 8))
        pose = (int(fire) * 2 + int(facing_left)) * PLAYER_FRAMES + frame
        boxes.append(SpriteBox("player", 0, x, y, x - 1, y + (0 if big else 16), x + 17, y + 34, pose))
    palette = area_type(state)
    for slot in range(ENEMY_SLOTS):
        if not _valid(state_mask, f"enemy{slot}_screen_x"):
            continue
        x = field_int(state, f"enemy{slot}_screen_x")
        y = field_int(state, f"enemy{slot}_screen_y")
        if x <= -24 or x >= FRAME_WIDTH + 8:
            continue
        kind = min(ENEMY_TYPES - 1, max(0, field_int(state, f"enemy{slot}_type")))
        pose = PLAYER_POSES + palette * ENEMY_TYPES + kind
        if kind in FIREBAR_TYPES:
            reach = FIREBAR_REACH[kind == LONG_FIREBAR]
            spin = field_int(state, f"enemy{slot}_y_speed") if _valid(state_mask, f"enemy{slot}_y_speed") else -1
            boxes.append(SpriteBox("firebar", slot, x, y, x + 4 - reach, y + 4 - reach, x + 4 + reach, y + 4 + reach,
                                   pose, spin if 0 <= spin < FIREBAR_SPINS else -1))
        else:
            direction = field_int(state, f"enemy{slot}_moving_dir") if _valid(state_mask, f"enemy{slot}_moving_dir") \
                else 0
            boxes.append(_object_box("enemy", slot, x, y, pose, direction if 0 < direction < MOVING_DIRECTIONS else 0))
    if _valid(state_mask, "powerup_screen_x"):
        x, y = field_int(state, "powerup_screen_x"), field_int(state, "powerup_screen_y")
        if -24 < x < FRAME_WIDTH + 8:
            kind = POWERUP_POSE_TYPE + min(3, max(0, field_int(state, "powerup_type")))
            boxes.append(_object_box("powerup", ENEMY_SLOTS, x, y, PLAYER_POSES + palette * ENEMY_TYPES + kind))
    return boxes


def _object_box(kind: str, slot: int, x: int, y: int, pose: int, direction: int = 0) -> SpriteBox:
    """The box of an enemy or the power-up at RAM position ``(x, y)``: x in [x-1, x+18), y in [y, y+26)."""
    return SpriteBox(kind, slot, x, y, x - 1, y, x + 18, y + 26, pose, direction=direction)


def lingering_boxes(boxes: list[SpriteBox]) -> list[SpriteBox]:
    """The boxes of ``boxes`` that may hide the same level pixels frame after frame: all but fire bars, whose
    balls sweep a disc and cover any one pixel of it only briefly. Votes for a level pixel's most frequent
    colour (the atlas, a session's background) leave these out and keep the fire bars' discs."""
    return [box for box in boxes if box.kind != "firebar"]


def box_mask(boxes: list[SpriteBox], height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH,
             margin: int = 0) -> np.ndarray:
    """``(H, W)`` bool: True inside any of ``boxes`` (grown by ``margin`` pixels), clipped to the frame."""
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        y0, y1 = max(0, box.y0 - margin), min(height, box.y1 + margin)
        x0, x1 = max(0, box.x0 - margin), min(width, box.x1 + margin)
        if y0 < y1 and x0 < x1:
            mask[y0:y1, x0:x1] = True
    return mask


#: The status bar's digits the state vector gives: timer (3), score (6, millions to tens), coins (2).
HUD_DIGIT_SLOTS = 11


def hud_digits(state: np.ndarray) -> np.ndarray:
    """``(HUD_DIGIT_SLOTS,)`` int64 ``slot * 10 + digit`` of the timer, score and coin digits drawn in the status bar."""
    timer = int(round(min(999.0, max(0.0, field_value(state, "timer")))))
    score = int(round(min(9_999_990.0, max(0.0, field_value(state, "score"))))) // 10
    coins = int(round(min(99.0, max(0.0, field_value(state, "coins")))))
    digits = [timer // 100, timer // 10 % 10, timer % 10,
              *[score // 10 ** k % 10 for k in range(5, -1, -1)], coins // 10, coins % 10]
    return np.array([slot * 10 + digit for slot, digit in enumerate(digits)], dtype=np.int64)


def template_windows(boxes: list[SpriteBox]) -> list[tuple[int, int, int]]:
    """``(pose, top, left)`` of each object's template window in screen pixels."""
    return [(box.pose, box.y + TEMPLATE_OFFSET[1], box.x + TEMPLATE_OFFSET[0]) for box in boxes]


#: Where the status bar draws the digits :func:`hud_digits` lists: ``(y0, y1, x0, x1)`` screen pixels of
#: the score (6 digits), the coins (2) and the timer (3), each digit an 8x8 NES tile (measured on 1-1).
HUD_DIGIT_BOXES: tuple[tuple[int, int, int, int], ...] = ((24, 31, 24, 72), (24, 31, 104, 120), (24, 31, 208, 232))


def hud_digit_mask(height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH) -> np.ndarray:
    """``(H, W)`` bool: True on the status-bar digits (score, coins, timer)."""
    mask = np.zeros((height, width), dtype=bool)
    for y0, y1, x0, x1 in HUD_DIGIT_BOXES:
        mask[y0:y1, x0:x1] = True
    return mask


# --- motion: where things will be on the next frames ------------------------------------------------


def camera_velocity(state: np.ndarray, previous_state: np.ndarray | None) -> int:
    """Camera x pixels scrolled from the previous frame to this one (0 without a previous frame or
    across a level change, when camera x jumps)."""
    if previous_state is None or area_key(state) != area_key(previous_state):
        return 0
    step = camera_x(state) - camera_x(previous_state)
    return step if abs(step) <= 16 else 0


def predict_boxes(state: np.ndarray, state_mask: np.ndarray, previous_state: np.ndarray | None = None,
                  previous_mask: np.ndarray | None = None, steps: int = 1, margin: int = 2) -> list[SpriteBox]:
    """The sprite boxes ``steps`` frames after ``state``'s, by constant screen velocity.

    Each object's screen velocity is its move from the previous frame (the same slot, both times on
    screen; 0 for a new object), clipped to 16 px/step so that a slot reused by a new object does not
    throw its box across the screen. Each box is widened by ``margin`` pixels on every side and, in
    the direction of motion, by the whole predicted move (the object may stop), so the box covers
    both where the object is and where it is going.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0 frames ahead, got {steps}")
    previous = {}
    if previous_state is not None and previous_mask is not None and area_key(state) == area_key(previous_state):
        previous = {(box.kind, box.slot): box for box in sprite_boxes(previous_state, previous_mask)}
    predicted = []
    for box in sprite_boxes(state, state_mask):
        before = previous.get((box.kind, box.slot))
        dx = int(np.clip(box.x - before.x, -16, 16)) * steps if before else 0
        dy = int(np.clip(box.y - before.y, -16, 16)) * steps if before else 0
        predicted.append(SpriteBox(box.kind, box.slot, box.x + dx, box.y + dy,
                                   box.x0 + min(dx, 0) - margin, box.y0 + min(dy, 0) - margin,
                                   box.x1 + max(dx, 0) + margin, box.y1 + max(dy, 0) + margin, box.pose))
    return predicted
