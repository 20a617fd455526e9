"""Named button sets: the Discrete ``buttons`` action and the NES controller bytes behind it."""
from __future__ import annotations

from gym_super_mario_bros.actions import COMPLEX_MOVEMENT, RIGHT_ONLY, SIMPLE_MOVEMENT

#: Bit of each NES controller button in the byte the emulator reads.
BUTTON_BITS = {"right": 0x80, "left": 0x40, "down": 0x20, "up": 0x10,
               "start": 0x08, "select": 0x04, "B": 0x02, "A": 0x01, "NOOP": 0x00}

#: Button sets by name, in gym-super-mario-bros' order (index 0 is always NOOP).
BUTTON_SETS: dict[str, list[list[str]]] = {
    "simple": SIMPLE_MOVEMENT,
    "right_only": RIGHT_ONLY,
    "complex": COMPLEX_MOVEMENT,
}


def resolve_button_set(buttons: str | list[list[str]]) -> list[tuple[str, ...]]:
    """A button set given by name (``"simple"``, ``"right_only"``, ``"complex"``) or as a list of combos.

    Raises ``ValueError`` for an unknown name, an empty set, a combo that is not a list of button
    names (``["right", "A"]`` is two one-button combos only when written ``[["right"], ["A"]]``) or
    an unknown button name.
    """
    example = "a list of button combinations such as [['NOOP'], ['right', 'A']]"
    if isinstance(buttons, str):
        if buttons not in BUTTON_SETS:
            raise ValueError(f"unknown button set {buttons!r}: expected one of {sorted(BUTTON_SETS)} or {example}")
        combos = BUTTON_SETS[buttons]
    elif isinstance(buttons, (list, tuple)):
        combos = list(buttons)
    else:
        raise ValueError(f"buttons must be a button set name {sorted(BUTTON_SETS)} or {example}, got "
                         f"{type(buttons).__name__} {buttons!r}")
    if not combos:
        raise ValueError("the button set is empty: give at least one combination, e.g. [['NOOP']]")
    for combo in combos:
        if not isinstance(combo, (list, tuple)) or not all(isinstance(name, str) for name in combo):
            raise ValueError(f"button combination {combo!r} is not a list of button names: the button set must be "
                             f"{example}")
        unknown = [name for name in combo if name not in BUTTON_BITS]
        if unknown:
            raise ValueError(f"unknown button name(s) {unknown} in {combo}: expected names from {sorted(BUTTON_BITS)}")
    return [tuple(combo) for combo in combos]


def combo_to_byte(combo: tuple[str, ...]) -> int:
    """The controller byte that presses every button of ``combo``."""
    byte = 0
    for name in combo:
        byte |= BUTTON_BITS[name]
    return byte
