"""The RAM -> state-vector map."""
from pathlib import Path

import numpy as np
import pytest

from sgaps_env.state import STATE_FIELDS, STATE_INDEX, StateVectorReader, field_table_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs" / "state_vector.md"


def blank_ram():
    return np.zeros(2048, dtype=np.uint8)


def test_decodes_positions_speeds_digits_and_enemy_slots():
    ram = blank_ram()
    ram[0x006D], ram[0x0086] = 2, 40          # player level x = 552
    ram[0x0057] = 0xE8                        # x speed -24 (signed)
    ram[0x071A], ram[0x071C] = 1, 200         # camera x = 456
    ram[0x07F8:0x07FB] = [3, 8, 5]            # timer 385
    ram[0x07DD:0x07E3] = [0, 0, 1, 2, 5, 0]   # score 12,500
    ram[0x075A] = 0xFF                        # game over: lives -1
    ram[0x0010], ram[0x0017], ram[0x00D0] = 1, 6, 184  # enemy slot 1: an active goomba ...
    ram[0x006F], ram[0x0088] = 2, 64          # ... at level x 576, so 120 px right of the camera
    ram[0x006E], ram[0x0087], ram[0x00CF] = 9, 99, 99  # stale values in inactive slot 0
    state, mask = StateVectorReader().read(ram)

    def value(name):
        return state[STATE_INDEX[name]]

    assert value("player_level_x") * 4096 == pytest.approx(552)
    assert value("player_x_speed") * 64 == pytest.approx(-24)
    assert value("camera_x") * 4096 == pytest.approx(456)
    assert value("timer") * 400 == pytest.approx(385)
    assert value("score") * 1_000_000 == pytest.approx(12_500)
    assert value("lives") * 10 == pytest.approx(-1)
    assert value("enemy1_active") == 1.0
    assert value("enemy1_type") * 64 == pytest.approx(6)
    assert value("enemy1_screen_x") * 256 == pytest.approx(120)
    assert mask[STATE_INDEX["enemy1_screen_y"]] == 1.0
    for name in ("enemy0_type", "enemy0_screen_x", "enemy0_screen_y"):
        assert value(name) == -999.0 and mask[STATE_INDEX[name]] == 0.0
    assert value("enemy0_active") == 0.0 and mask[STATE_INDEX["enemy0_active"]] == 1.0


def test_padding_uses_the_sentinel_and_mask_zero():
    reader = StateVectorReader(max_state_dim=50, sentinel=-5.0)
    state, mask = reader.read(blank_ram())
    count = len(STATE_FIELDS)
    assert state.shape == mask.shape == (50,)
    assert np.all(state[count:] == -5.0) and np.all(mask[count:] == 0.0)
    assert mask[:count].sum() == count - 3 * 5  # every enemy slot is inactive in blank RAM


def test_any_ram_decodes_inside_the_declared_bounds(rng):
    reader = StateVectorReader()
    low, high = reader.bounds
    for _ in range(300):
        state, mask = reader.read(rng.integers(0, 256, 2048, dtype=np.uint8))
        assert np.all(state >= low) and np.all(state <= high)
        assert set(np.unique(mask)) <= {0.0, 1.0}
    assert np.all(low < high), "no dimension of the state space may be degenerate"


def test_too_small_max_state_dim_is_rejected_with_the_minimum():
    with pytest.raises(ValueError, match=f"max_state_dim >= {len(STATE_FIELDS)}"):
        StateVectorReader(max_state_dim=10)


def test_field_names_are_unique_and_indexed_in_order():
    names = [field.name for field in STATE_FIELDS]
    assert len(names) == len(set(names))
    assert [STATE_INDEX[name] for name in names] == list(range(len(names)))


def test_docs_show_the_current_field_table():
    assert field_table_markdown() in DOCS.read_text(), (
        "docs/state_vector.md is out of date: paste the output of `python -m sgaps_env.describe` into it")
