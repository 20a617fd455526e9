"""The game-state vector read from Super Mario Bros RAM: its fields, scaling and masking.

``STATE_FIELDS`` is the single source of truth for what each entry of the
observation's ``state`` vector means. Every field is a linear combination of
RAM bytes divided by a scale::

    value = sum(weight_i * byte_i) / scale        (bytes read as int8 where signed)

Values are clipped to the field's documented range, so the vector always lies
inside the observation space. Enemy-slot fields other than the active flag are
*masked* (``state_mask == 0`` and the value set to the sentinel) while the
slot is inactive, because the game leaves stale positions in inactive slots.
Entries past ``len(STATE_FIELDS)`` up to ``max_state_dim`` are padding: sentinel
with mask 0.

The state vector the environment returns with a frame describes that frame:
the NES renders a frame from the RAM as it was at the end of the previous
frame, so the environment reads the RAM just before the last emulated frame
of each step (see ``SGAPSSuperMarioBrosEnv``).

``python -m sgaps_env.describe`` prints the field table as Markdown (the same
table is in ``docs/state_vector.md``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Default value written into masked and padded entries of the state vector.
DEFAULT_SENTINEL = -999.0
#: Default length of the state vector (the seed protocol's ``max_state_dim``).
DEFAULT_MAX_STATE_DIM = 64
#: Largest ``max_state_dim`` accepted: room for ~90x the fields, while a typo such as 10**8 is refused
#: before it allocates gigabytes of observation-space bounds.
MAX_STATE_DIM = 4096

ENEMY_SLOTS = 5


@dataclass(frozen=True)
class StateField:
    """One entry of the state vector."""

    name: str
    addresses: tuple[int, ...]
    weights: tuple[float, ...]
    scale: float
    description: str
    signed: bool = False
    #: Largest value each byte takes in play (9 for decimal digits).
    byte_max: int = 255
    #: RAM address of the enemy-slot flag that must be non-zero for this field to be valid.
    active_flag: int | None = None

    @property
    def low(self) -> float:
        """Smallest value the field can take after scaling."""
        lo, hi = (-128, 127) if self.signed else (0, self.byte_max)
        return sum(min(w * lo, w * hi) for w in self.weights) / self.scale

    @property
    def high(self) -> float:
        """Largest value the field can take after scaling."""
        lo, hi = (-128, 127) if self.signed else (0, self.byte_max)
        return sum(max(w * lo, w * hi) for w in self.weights) / self.scale


def _field(name, address, scale, description, **kwargs) -> StateField:
    addresses = tuple(address) if isinstance(address, (tuple, list)) else (address,)
    weights = kwargs.pop("weights", (1.0,) * len(addresses))
    return StateField(name, addresses, tuple(float(w) for w in weights), float(scale), description, **kwargs)


def _enemy_fields(slot: int) -> list[StateField]:
    flag = 0x000F + slot
    return [
        _field(f"enemy{slot}_active", flag, 1, f"enemy slot {slot} is in use (0 or 1)", byte_max=1),
        _field(f"enemy{slot}_type", 0x0016 + slot, 64, f"enemy slot {slot} object type id / 64",
               active_flag=flag),
        # x on screen = the slot's level x minus the camera's (RAM 0x03AE+ is not per slot: it holds the
        # last processed enemy's and other objects' screen x)
        _field(f"enemy{slot}_screen_x", (0x006E + slot, 0x0087 + slot, 0x071A, 0x071C), 256,
               f"enemy slot {slot} x relative to the screen's left edge in pixels (level x - camera x) / 256",
               weights=(256, 1, -256, -1), active_flag=flag),
        _field(f"enemy{slot}_screen_y", 0x00CF + slot, 256, f"enemy slot {slot} y on screen in pixels / 256",
               active_flag=flag),
    ]


#: The state vector's fields, in order. Scaling keeps typical play values in about [-1, 1].
STATE_FIELDS: tuple[StateField, ...] = (
    _field("player_level_x", (0x006D, 0x0086), 4096, "player x in the level in pixels (page*256 + x) / 4096",
           weights=(256, 1)),
    _field("player_screen_x", 0x03AD, 256, "player x on screen in pixels / 256"),
    _field("player_screen_y", 0x00CE, 256, "player y on screen in pixels / 256"),
    _field("player_y_viewport", 0x00B5, 4, "vertical screen page: 0 above, 1 on screen, 2+ falling below; / 4"),
    _field("player_x_speed", 0x0057, 64, "horizontal speed, signed, / 64 (running is about 0.6)", signed=True),
    _field("player_y_speed", 0x009F, 8, "vertical speed, signed, / 8 (negative is upwards)", signed=True),
    _field("player_state", 0x000E, 16, "player state code (8 normal, 11 dying, 6 dead, ...) / 16"),
    _field("player_float_state", 0x001D, 4, "0 ground, 1 jumping, 2 falling, 3 flagpole; / 4"),
    _field("player_facing", 0x0033, 2, "facing direction (1 right, 2 left) / 2"),
    _field("powerup", 0x0756, 2, "power-up (0 small, 1 big, 2 fire) / 2"),
    _field("star_timer", 0x079F, 32, "star invincibility timer / 32"),
    *[field for slot in range(ENEMY_SLOTS) for field in _enemy_fields(slot)],
    _field("camera_x", (0x071A, 0x071C), 4096, "camera left edge in the level in pixels (page*256 + x) / 4096",
           weights=(256, 1)),
    _field("world", 0x075F, 7, "world, 0-based (0 is world 1) / 7"),
    _field("stage", 0x075C, 3, "stage within the world, 0-based / 3"),
    _field("area", 0x0760, 4, "area (sub-level) index, 0-based / 4"),
    _field("game_mode", 0x0770, 3, "game mode (0 demo, 1 playing, 2 end of world) / 3"),
    _field("timer", (0x07F8, 0x07F9, 0x07FA), 400, "level timer from its three decimal digits / 400",
           weights=(100, 10, 1), byte_max=9),
    _field("lives", 0x075A, 10, "lives left beyond the current one, signed (-1 is game over) / 10", signed=True),
    _field("coins", 0x075E, 100, "coins collected / 100"),
    _field("score", tuple(range(0x07DD, 0x07E3)), 1_000_000,
           "score from its six decimal digits (millions to tens) / 1,000,000",
           weights=(1e6, 1e5, 1e4, 1e3, 100, 10), byte_max=9),
    _field("frame_phase", 0x0009, 256, "global frame counter (drives sprite animation) / 256"),
    _field("player_sprite", 0x06D5, 256, "which player graphics frame is drawn (size, walk/jump/swim pose; "
           "multiples of 8) / 256"),
    _field("area_type", 0x074E, 3, "area type (0 water, 1 ground, 2 underground, 3 castle; sets the palettes) / 3"),
    _field("color_rotation", 0x06D4, 8, "palette rotation step 0-5 (the blinking of ?-blocks and coins; "
           "advances every 8 frames) / 8"),
    # appended after the first 44 (a checkpoint of that time reads only those: see models.spt.SPTConfig.state_fields)
    *[_field(f"enemy{slot}_y_speed", 0x00A0 + slot, 8,
             f"enemy slot {slot} vertical speed, signed, / 8; a fire bar (types 0x1B-0x1F) keeps its spin step "
             "here instead: 0-31, the bar's angle in 32 steps around its pivot", signed=True,
             active_flag=0x000F + slot) for slot in range(ENEMY_SLOTS)],
    _field("powerup_active", 0x0014, 1, "the power-up object (mushroom, flower, star, 1-up) is out (0 or 1)",
           byte_max=1),
    _field("powerup_type", 0x0039, 4, "power-up type (0 mushroom, 1 fire flower, 2 star, 3 1-up mushroom) / 4",
           byte_max=3, active_flag=0x0014),
    _field("powerup_screen_x", (0x0073, 0x008C, 0x071A, 0x071C), 256,
           "power-up x relative to the screen's left edge in pixels (level x - camera x) / 256",
           weights=(256, 1, -256, -1), active_flag=0x0014),
    _field("powerup_screen_y", 0x00D4, 256, "power-up y on screen in pixels / 256", active_flag=0x0014),
    *[_field(f"enemy{slot}_moving_dir", 0x0046 + slot, 2,
             f"enemy slot {slot} moving direction (1 right, 2 left) / 2; with the frame counter it decides which "
             "way the sprite is drawn (a Goomba's picture flips every 8 frames)", active_flag=0x000F + slot)
      for slot in range(ENEMY_SLOTS)],
)

#: How many fields the state vector had before the fire-bar spin and power-up fields were appended: what
#: recordings and checkpoints of that time hold (the entries after them are padding there).
LEGACY_STATE_FIELDS = 44

#: Field name -> index in the state vector.
STATE_INDEX: dict[str, int] = {field.name: index for index, field in enumerate(STATE_FIELDS)}

#: Field name -> its scale: a state value times its scale is the field in game units (pixels, RAM codes).
STATE_SCALE: dict[str, float] = {field.name: field.scale for field in STATE_FIELDS}


#: Each real field's range ``[low, high]`` (``StateField.low``/``high``), ``(len(STATE_FIELDS),)`` float64.
FIELD_LOW = np.array([field.low for field in STATE_FIELDS])
FIELD_HIGH = np.array([field.high for field in STATE_FIELDS])


def field_out_of_range(state: np.ndarray, checked: np.ndarray, slack: float | np.ndarray = 0.0) -> int | None:
    """The index of the first real field of ``state`` that ``checked`` (a bool per real field) selects and that
    lies more than ``slack`` (one number, or one per field) outside its range; None when every one is inside.
    What decides that a state from outside (a checkpoint's input, a client's message) is one the environment
    could have produced."""
    values = np.asarray(state, np.float64)[:len(STATE_FIELDS)]
    outside = np.asarray(checked, bool) & ((values < FIELD_LOW - slack) | (values > FIELD_HIGH + slack))
    return int(np.flatnonzero(outside)[0]) if outside.any() else None


def field_value(state: np.ndarray, name: str) -> float:
    """Field ``name`` of a state vector in game units (pixels, speeds, RAM codes, digits).

    ``field_value(state, "camera_x")`` is the camera's left edge in level pixels; masked entries hold
    the sentinel times the scale, so check ``state_mask`` first where a field can be masked.
    """
    try:
        index = STATE_INDEX[name]
    except KeyError:
        raise ValueError(f"unknown state field {name!r}: see sgaps_env.STATE_FIELDS or docs/state_vector.md") from None
    return float(state[index]) * STATE_SCALE[name]


def field_int(state: np.ndarray, name: str) -> int:
    """Field ``name`` in game units rounded to the nearest integer (positions, codes, counters)."""
    return int(round(field_value(state, name)))


def field_ints(states: np.ndarray, name: str) -> np.ndarray:
    """Field ``name`` of every state in ``states (..., D)`` in game units, rounded to int64 ``(...)``."""
    if name not in STATE_INDEX:
        raise ValueError(f"unknown state field {name!r}: see sgaps_env.STATE_FIELDS or docs/state_vector.md")
    return np.rint(np.asarray(states, np.float64)[..., STATE_INDEX[name]] * STATE_SCALE[name]).astype(np.int64)


class StateVectorReader:
    """Turns a 2048-byte RAM snapshot into ``(state, state_mask)`` float32 vectors.

    The decoding is one gather and one small matrix product, so reading the
    state costs a few microseconds per step.
    """

    def __init__(self, max_state_dim: int = DEFAULT_MAX_STATE_DIM, sentinel: float = DEFAULT_SENTINEL,
                 fields: tuple[StateField, ...] = STATE_FIELDS):
        if isinstance(max_state_dim, (bool, np.bool_)) or not isinstance(max_state_dim, (int, np.integer)):
            raise ValueError(f"max_state_dim must be an integer in [{len(fields)}, {MAX_STATE_DIM}], got "
                             f"{type(max_state_dim).__name__} {max_state_dim!r}")
        if max_state_dim < len(fields):
            raise ValueError(f"max_state_dim={max_state_dim} is smaller than the {len(fields)} state fields; "
                             f"use max_state_dim >= {len(fields)} (an integer in [{len(fields)}, {MAX_STATE_DIM}])")
        if max_state_dim > MAX_STATE_DIM:
            raise ValueError(f"max_state_dim={max_state_dim} is larger than {MAX_STATE_DIM}: the state has "
                             f"{len(fields)} fields, so use an integer in [{len(fields)}, {MAX_STATE_DIM}]")
        if (isinstance(sentinel, (bool, np.bool_)) or not isinstance(sentinel, (int, float, np.integer, np.floating))
                or not np.isfinite(sentinel)):
            raise ValueError(f"sentinel must be a finite number (the value of masked state entries), got "
                             f"{type(sentinel).__name__} {sentinel!r}")
        self.fields = fields
        self.max_state_dim = int(max_state_dim)
        self.sentinel = float(sentinel)
        addresses = sorted({address for field in fields for address in field.addresses})
        column = {address: index for index, address in enumerate(addresses)}
        self._addresses = np.array(addresses, dtype=np.int64)
        self._weights = np.zeros((len(fields), len(addresses)), dtype=np.float64)
        signed = np.zeros(len(addresses), dtype=bool)
        for row, field in enumerate(fields):
            for address, weight in zip(field.addresses, field.weights):
                self._weights[row, column[address]] = weight / field.scale
                signed[column[address]] |= field.signed
        self._signed_columns = np.flatnonzero(signed)
        self._low = np.array([field.low for field in fields])
        self._high = np.array([field.high for field in fields])
        flagged = [(row, field.active_flag) for row, field in enumerate(fields) if field.active_flag is not None]
        self._masked_rows = np.array([row for row, _ in flagged], dtype=np.int64)
        self._mask_flags = np.array([flag for _, flag in flagged], dtype=np.int64)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` float32 arrays of length ``max_state_dim``, including the sentinel.

        Padding entries always hold the sentinel; their bounds are widened to include 0 so that
        no dimension of the space is degenerate (``low == high``).
        """
        low = np.full(self.max_state_dim, min(self.sentinel, 0.0), dtype=np.float32)
        high = np.full(self.max_state_dim, max(self.sentinel, 0.0), dtype=np.float32)
        count = len(self.fields)
        low[:count] = self._low
        high[:count] = self._high
        low[self._masked_rows] = np.minimum(low[self._masked_rows], self.sentinel)
        high[self._masked_rows] = np.maximum(high[self._masked_rows], self.sentinel)
        return low, high

    def read(self, ram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode a RAM snapshot into ``(state, state_mask)``, each ``(max_state_dim,)`` float32."""
        raw = ram[self._addresses].astype(np.float64)
        raw[self._signed_columns] = ram[self._addresses[self._signed_columns]].view(np.int8)
        values = np.clip(self._weights @ raw, self._low, self._high)
        state = np.full(self.max_state_dim, self.sentinel, dtype=np.float32)
        mask = np.zeros(self.max_state_dim, dtype=np.float32)
        count = len(self.fields)
        state[:count] = values
        mask[:count] = 1.0
        inactive = self._masked_rows[ram[self._mask_flags] == 0]
        state[inactive] = self.sentinel
        mask[inactive] = 0.0
        return state, mask


def field_table_markdown(fields: tuple[StateField, ...] = STATE_FIELDS) -> str:
    """The state fields as a Markdown table (index, name, RAM, range, meaning)."""
    lines = [
        "| index | field | RAM | range | meaning |",
        "|---:|---|---|---|---|",
    ]
    for index, field in enumerate(fields):
        ram = " ".join(f"0x{address:04X}" for address in field.addresses)
        masked = " (masked when inactive)" if field.active_flag is not None else ""
        lines.append(
            f"| {index} | `{field.name}` | {ram} | [{field.low:.4g}, {field.high:.4g}] | "
            f"{field.description}{masked} |"
        )
    return "\n".join(lines)

