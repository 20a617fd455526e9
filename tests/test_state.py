"""The RAM -> state-vector map."""
from pathlib import Path

import numpy as np
import pytest

from sgaps_env.state import (LEGACY_STATE_FIELDS, MAX_STATE_DIM, STATE_FIELDS, STATE_INDEX, StateVectorReader, field_int,
                             field_table_markdown, field_value)

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

    in_game_units = {"player_level_x": 552, "player_x_speed": -24, "camera_x": 456, "timer": 385, "score": 12_500,
                     "lives": -1, "enemy1_active": 1, "enemy1_type": 6, "enemy1_screen_x": 120, "enemy1_screen_y": 184}
    for name, expected in in_game_units.items():
        assert field_value(state, name) == pytest.approx(expected, abs=1e-3), name
        assert field_int(state, name) == expected, name
    assert mask[STATE_INDEX["enemy1_screen_y"]] == 1.0
    for name in ("enemy0_type", "enemy0_screen_x", "enemy0_screen_y"):
        assert state[STATE_INDEX[name]] == -999.0 and mask[STATE_INDEX[name]] == 0.0
    assert state[STATE_INDEX["enemy0_active"]] == 0.0 and mask[STATE_INDEX["enemy0_active"]] == 1.0


def test_field_int_reads_every_byte_value_back_in_game_units():
    # Each single-byte unsigned field, for every byte it can hold, comes back as that byte.
    reader = StateVectorReader()
    single = [field for field in STATE_FIELDS
              if len(field.addresses) == 1 and not field.signed and field.active_flag is None]
    assert len(single) >= 15
    for byte in range(256):
        ram = blank_ram()
        for field in single:
            ram[field.addresses[0]] = min(byte, field.byte_max)
        state, _ = reader.read(ram)
        for field in single:
            assert field_int(state, field.name) == min(byte, field.byte_max), (field.name, byte)


def test_field_value_rejects_unknown_names_and_points_to_the_table():
    state, _ = StateVectorReader().read(blank_ram())
    with pytest.raises(ValueError, match="unknown state field 'camera'.*STATE_FIELDS"):
        field_value(state, "camera")
    with pytest.raises(ValueError, match="unknown state field"):
        field_int(state, "enemy5_type")  # there are five slots, 0-4


def test_padding_uses_the_sentinel_and_mask_zero():
    reader = StateVectorReader(max_state_dim=60, sentinel=-5.0)
    state, mask = reader.read(blank_ram())
    count = len(STATE_FIELDS)
    assert state.shape == mask.shape == (60,)
    assert np.all(state[count:] == -5.0) and np.all(mask[count:] == 0.0)
    assert mask[:count].sum() == count - 5 * 5 - 3  # blank RAM: every enemy slot and the power-up are inactive


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


@pytest.mark.parametrize("kwargs, message", [
    ({"max_state_dim": 10**8}, rf"max_state_dim=100000000 is larger than {MAX_STATE_DIM}"),
    ({"max_state_dim": MAX_STATE_DIM + 1}, "larger than"),
    ({"max_state_dim": 64.0}, r"max_state_dim must be an integer in \[58, 4096\], got float"),
    ({"max_state_dim": True}, "got bool"),
    ({"sentinel": float("nan")}, "sentinel must be a finite number"),
    ({"sentinel": "-999"}, "got str"),
    ({"sentinel": False}, "got bool"),
])
def test_state_reader_refuses_huge_or_mistyped_sizes_and_sentinels(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StateVectorReader(**kwargs)


def test_largest_state_length_is_allowed_and_padded():
    state, mask = StateVectorReader(max_state_dim=MAX_STATE_DIM).read(blank_ram())
    assert state.shape == (MAX_STATE_DIM,) and mask[len(STATE_FIELDS):].sum() == 0


def test_the_documented_fields_keep_their_places():
    # The observation's layout is a public contract (docs/state_vector.md, the wire format): fields are only
    # appended, so the first LEGACY_STATE_FIELDS keep their places (recordings and checkpoints hold them there).
    names = [field.name for field in STATE_FIELDS]
    assert len(names) == len(set(names)) == 58
    assert LEGACY_STATE_FIELDS == 44
    assert names[:3] == ["player_level_x", "player_screen_x", "player_screen_y"]
    assert names[41:44] == ["player_sprite", "area_type", "color_rotation"]
    assert names[44:] == [*[f"enemy{slot}_y_speed" for slot in range(5)], "powerup_active", "powerup_type",
                          "powerup_screen_x", "powerup_screen_y", *[f"enemy{slot}_moving_dir" for slot in range(5)]]


def test_docs_show_the_current_field_table():
    assert field_table_markdown() in DOCS.read_text(), (
        "docs/state_vector.md is out of date: paste the output of `python -m sgaps_env.describe` into it")


def test_a_stage_s_sub_areas_have_their_own_level_key_and_a_rewinding_camera_is_left_of_the_level():
    from models.memory import StagePriors
    from sgaps_env.sprites import area_key, camera_x

    ram = blank_ram()
    ram[0x074E] = 1  # ground: 1-1 itself
    ground = area_key(StateVectorReader().read(ram)[0])
    ram[0x074E] = 2  # underground: 1-1's bonus room has the same area number and starts at camera x 0 too
    bonus = area_key(StateVectorReader().read(ram)[0])
    assert (ground, bonus) == ("1-1-0-ground", "1-1-0-underground")
    ram[0x071A], ram[0x071C] = 0xFF, 160  # 4-4's maze rewinding the level: page 0xFF
    assert camera_x(StateVectorReader().read(ram)[0]) == -96
    legacy, current = object(), object()
    assert StagePriors({"1-1-0": legacy}).get(bonus) is legacy, "an older checkpoint's key serves every sub-area"
    assert StagePriors({"1-1-0-ground": current}).get(bonus) is None
    assert StagePriors({"1-1-0-ground": current}).get(ground) is current


def test_field_out_of_range_names_the_first_checked_field_past_its_slack():
    from sgaps_env.state import FIELD_HIGH, FIELD_LOW, STATE_INDEX, field_out_of_range

    state = (FIELD_LOW + FIELD_HIGH) / 2
    everything = np.ones(len(state), bool)
    assert field_out_of_range(state, everything) is None
    camera, world = STATE_INDEX["camera_x"], STATE_INDEX["world"]
    state[world] = FIELD_HIGH[world] + 1.0
    state[camera] = FIELD_HIGH[camera] + 1e-3
    assert field_out_of_range(state, everything) == camera  # the first one
    assert field_out_of_range(state, everything, slack=1e-2) == world  # camera's excess is within the slack
    unchecked = everything.copy()
    unchecked[[camera, world]] = False
    assert field_out_of_range(state, unchecked) is None  # masked fields are not read
    state[camera] = FIELD_LOW[camera] - 1.0
    assert field_out_of_range(state, everything, slack=1e-2) == camera  # below the range too
