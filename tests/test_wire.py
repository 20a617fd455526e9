"""The wire protocol (sgaps_env.wire): round trips, exact state, byte budgets, errors, on real frames and as
hypothesis properties (any valid message round-trips; any bytes decode or raise ValueError)."""
import dataclasses
import zlib

import gymnasium as gym
import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sgaps_env  # noqa: F401 (registers SGAPS-SMB-v0)
from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, make_pattern, pixel_to_uv, uv_to_pixel
from sgaps_env.state import DEFAULT_SENTINEL, STATE_FIELDS, STATE_INDEX
from sgaps_env.wire import (MAX_DECODED_BYTES, MESSAGE_TYPES, ErrorMessage, FrameData, Heartbeat, HeartbeatAck,
                            SessionStart, SessionStartAck, UVCoordinates, decode, message_size)

TIMESTAMP_MS = 1_790_000_000_000  # a wall-clock time in ms: the 9-byte worst case of msgpack ints
STEPS = 100
FIELDS = len(STATE_FIELDS)


def _play(color: str) -> list[tuple[np.ndarray, dict]]:
    """(coords, observation) of ~100 real steps of 1-1, running right and jumping, random coords."""
    env = gym.make("SGAPS-SMB-v0", stage="1-1", sample_count=500, color=color)
    rng = np.random.default_rng(7)
    env.reset(seed=3)
    frames = []
    try:
        for step in range(STEPS):
            coords = make_pattern("random", 500, rng)
            buttons = 4 if step % 12 < 4 else 1  # right+A+B now and then, else right
            observation, _, terminated, truncated, _ = env.step({"buttons": buttons, "coords": coords})
            frames.append((coords, observation))
            if terminated or truncated:
                env.reset()
    finally:
        env.close()
    return frames


@pytest.fixture(scope="module")
def gray_frames():
    return _play("gray")


@pytest.fixture(scope="module")
def rgb_frames():
    return _play("rgb")


def _payload(data: bytes) -> dict:
    return msgpack.unpackb(zlib.decompress(data), raw=False)


def _assert_frames_round_trip(frames, channels: int) -> list[int]:
    sizes = []
    for frame_id, (coords, observation) in enumerate(frames):
        message = FrameData.from_observation(frame_id, observation, TIMESTAMP_MS + 67 * frame_id)
        data = message.encode()
        sizes.append(len(data))
        assert message_size(message) == len(data)
        decoded = decode(data)
        assert isinstance(decoded, FrameData)
        assert decoded == message
        assert decoded.frame_id == frame_id and decoded.timestamp_ms == TIMESTAMP_MS + 67 * frame_id
        # the state bit for bit, the mask exactly
        assert decoded.state.dtype == np.float32 and decoded.state.shape == (64,)
        assert decoded.state.tobytes() == observation["state"].tobytes()
        np.testing.assert_array_equal(decoded.state_mask, observation["state_mask"])
        # values: within the quantization step of the env's values, and exactly multiples of 1/255
        truth = observation["pixels"][:, 2:]
        assert decoded.values.shape == (500, channels) and decoded.values.dtype == np.float32
        assert np.abs(decoded.values - truth).max() <= 0.5 / 255 + 1e-7
        quantized = np.rint(truth.astype(np.float64) * 255).astype(np.float32)
        np.testing.assert_array_equal(decoded.values, quantized * np.float32(1 / 255))
        np.testing.assert_allclose(decoded.values, quantized / 255, rtol=1.2e-7, atol=0)
        # the server rebuilds the observation's pixels from the coords it sent
        pixels = decoded.to_pixels(coords)
        assert pixels.shape == observation["pixels"].shape and pixels.dtype == np.float32
        np.testing.assert_array_equal(pixels[:, :2], observation["pixels"][:, :2])
        np.testing.assert_array_equal(pixels[:, 2:], decoded.values)
        # the layout: short keys, no coordinates, every valid field an exact int
        payload = _payload(data)
        assert set(payload) == {"t", "i", "c", "v", "d", "s", "m"}
        assert payload["d"] == 64 and payload["c"] == channels and len(payload["v"]) == 500 * channels
        for entry, valid in zip(payload["s"], observation["state_mask"][:FIELDS]):
            assert (entry is None) if valid == 0 else (type(entry) is int)
    return sizes


def test_frame_data_round_trips_real_gray_frames_within_budget(gray_frames):
    sizes = _assert_frames_round_trip(gray_frames, channels=1)
    assert max(sizes) <= 600, f"FrameData at 500 gray pixels: max {max(sizes)} bytes > 600"
    # the run covers masked and unmasked enemy fields, so both state paths were exercised
    masks = np.stack([observation["state_mask"] for _, observation in gray_frames])
    enemy = STATE_INDEX["enemy0_screen_x"]
    assert masks[:, enemy].min() == 0 and masks[:, enemy].max() == 1


def test_frame_data_round_trips_real_rgb_frames(rgb_frames):
    sizes = _assert_frames_round_trip(rgb_frames, channels=3)
    assert max(sizes) <= 600, f"FrameData at 500 rgb pixels: max {max(sizes)} bytes > 600"
    # rgb values are exact multiples of 1/255: nothing is lost
    for _, observation in rgb_frames[:5]:
        decoded = decode(FrameData.from_observation(0, observation).encode())
        np.testing.assert_array_equal(decoded.values, observation["pixels"][:, 2:])


def test_plain_values_deflate_smaller_than_delta_coded(gray_frames, rgb_frames):
    """The documented choice: plain uint8 values beat sample-order deltas after zlib on real frames."""
    for frames in (gray_frames, rgb_frames):
        plain = delta = 0
        for _, observation in frames:
            quantized = np.rint(observation["pixels"][:, 2:].astype(np.float64) * 255).astype(np.uint8)
            plain += len(zlib.compress(quantized.tobytes(), 9))
            delta += len(zlib.compress(np.diff(quantized, axis=0, prepend=np.uint8(0)).tobytes(), 9))
        assert plain < delta


def test_frame_data_defaults_and_custom_sentinel(gray_frames):
    _, observation = gray_frames[0]
    message = FrameData.from_observation(5, observation)
    assert message.timestamp_ms == 0 and message.sentinel == DEFAULT_SENTINEL
    assert "m" not in _payload(message.encode()) and "e" not in _payload(message.encode())
    assert (message.sample_count, message.channels, message.max_state_dim) == (500, 1, 64)

    # an environment created with another sentinel: inferred from the masked entries, sent, rebuilt
    state = np.where(observation["state_mask"] == 0, np.float32(-5.0), observation["state"]).astype(np.float32)
    custom = FrameData.from_observation(5, {**observation, "state": state})
    assert custom.sentinel == -5.0
    decoded = decode(custom.encode())
    assert decoded == custom and decoded.state.tobytes() == state.tobytes()
    assert decode(FrameData.from_observation(5, observation).encode()).state.tobytes() != state.tobytes()


def test_frame_data_other_max_state_dim_and_non_grid_state_values():
    values = np.linspace(0, 1, 12, dtype=np.float32).reshape(4, 3)
    state = np.full(60, DEFAULT_SENTINEL, dtype=np.float32)
    mask = np.zeros(60, dtype=np.float32)
    state[:FIELDS] = np.arange(FIELDS) / 7
    mask[:FIELDS] = 1
    state[3] = np.float32(0.123456)  # not int / scale: travels as a float, still exact
    state[4] = np.float32(-0.0)
    mask[STATE_INDEX["enemy2_type"]] = 0
    message = FrameData(9, values, state, mask, timestamp_ms=12)
    decoded = decode(message.encode())
    assert decoded == message and decoded.max_state_dim == 60
    expected = state.copy()
    expected[STATE_INDEX["enemy2_type"]] = DEFAULT_SENTINEL
    assert decoded.state.tobytes() == expected.tobytes()
    assert np.abs(decoded.values - values).max() <= 0.5 / 255 + 1e-7
    np.testing.assert_array_equal(decoded.values, message.values)
    assert decoded.state[4].tobytes() == np.float32(-0.0).tobytes()  # not flattened to +0.0


def test_frame_data_equality_sees_every_field(gray_frames):
    _, observation = gray_frames[10]
    message = FrameData.from_observation(1, observation)
    assert message != FrameData.from_observation(2, observation)
    assert message != FrameData.from_observation(1, observation, timestamp_ms=1)
    other_values = observation["pixels"].copy()
    other_values[0, 2] = 1.0 if other_values[0, 2] < 0.5 else 0.0
    assert message != FrameData.from_observation(1, {**observation, "pixels": other_values})
    other_state = observation["state"].copy()
    other_state[0] += np.float32(1 / 4096)
    assert message != FrameData.from_observation(1, {**observation, "state": other_state})


def test_frame_data_is_frozen(gray_frames):
    message = FrameData.from_observation(1, gray_frames[0][1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.frame_id = 2
    with pytest.raises(ValueError):
        message.values[0, 0] = 0.5


@pytest.mark.parametrize("values, match", [
    (np.full((10, 1), 1.5, np.float32), r"\[0, 1\]"),
    (np.full((10, 1), -0.1, np.float32), r"\[0, 1\]"),
    (np.full((10, 1), 255.0, np.float32), r"\[0, 1\]"),
    (np.full((10, 1), np.nan, np.float32), "NaN"),
    (np.full(10, 0.5, np.float32), r"expected \(N, C\)"),
    (np.full((10, 2), 0.5, np.float32), r"expected \(N, C\)"),
    (np.full((10, 4, 1), 0.5, np.float32), r"expected \(N, C\)"),
])
def test_frame_data_rejects_bad_values(values, match):
    state = np.zeros(64, np.float32)
    mask = np.zeros(64, np.float32)
    with pytest.raises(ValueError, match=match):
        FrameData(0, values, state, mask)


def test_frame_data_rejects_bad_state_and_coords(gray_frames):
    coords, observation = gray_frames[0]
    values = observation["pixels"][:, 2:]
    state, mask = observation["state"], observation["state_mask"]
    with pytest.raises(ValueError, match="max_state_dim"):
        FrameData(0, values, state[:40], mask[:40])
    with pytest.raises(ValueError, match="same length"):
        FrameData(0, values, state, mask[:50])
    padded = mask.copy()
    padded[60] = 1
    with pytest.raises(ValueError, match="padding"):
        FrameData(0, values, state, padded)
    with pytest.raises(ValueError, match="only 0"):
        FrameData(0, values, state, mask * 0.5)
    broken = state.copy()
    broken[0] = np.inf
    with pytest.raises(ValueError, match="non-finite|infinite"):
        FrameData(0, values, broken, mask)
    with pytest.raises(ValueError, match="frame_id"):
        FrameData(-1, values, state, mask)
    with pytest.raises(ValueError, match="frame_id"):
        FrameData(1.5, values, state, mask)
    with pytest.raises(ValueError, match="observation must be a dict"):
        FrameData.from_observation(0, {"pixels": observation["pixels"]})
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        FrameData.from_observation(0, {**observation, "pixels": observation["pixels"][:, :2]})
    message = FrameData.from_observation(0, observation)
    with pytest.raises(ValueError, match=r"expected \(500, 2\)"):
        message.to_pixels(coords[:10])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        message.to_pixels(coords + 1)


def test_uv_coordinates_description_within_budget():
    message = UVCoordinates(17, description={"k": "ram", "n": 500, "s": 12345})
    data = message.encode()
    assert len(data) <= 128 and message_size(message) == len(data)
    assert decode(data) == message
    assert decode(data).description == {"k": "ram", "n": 500, "s": 12345} and decode(data).coords is None
    # richer descriptions: normalized at construction to what the client decodes
    rich = UVCoordinates(3, description={"k": "mix", "w": (0.25, 0.75), "b": b"\x01\x02", "i": np.int64(7),
                                         "f": np.float32(0.5), "nested": {"a": [1, 2]}})
    assert rich.description["w"] == [0.25, 0.75] and type(rich.description["i"]) is int
    assert decode(rich.encode()) == rich
    assert decode(rich.encode()).description == rich.description
    assert UVCoordinates(3, description={"s": 1}) != UVCoordinates(3, description={"s": 2})


def test_uv_coordinates_explicit_coords_round_trip_exactly(rng):
    coords = make_pattern("random", 500, rng)  # pixel centres
    message = UVCoordinates(4, coords=coords)
    data = message.encode()
    decoded = decode(data)
    assert decoded == message and decoded.description is None
    assert decoded.coords.dtype == np.float32 and decoded.coords.tobytes() == coords.tobytes()
    payload = _payload(data)
    rows, cols = uv_to_pixel(coords)
    assert payload["p"] == (rows * FRAME_WIDTH + cols).astype("<u2").tobytes()
    assert len(data) <= 2 * 500 + 40  # random indices are ~16 bits of entropy each
    # coords off the pixel centres (and the closed upper bound 1.0) snap to the pixel the env reads
    off = np.clip(make_pattern("stratified", 500, rng), 0, 1)
    off[0] = (1.0, 1.0)
    snapped = decode(UVCoordinates(4, coords=off).encode()).coords
    for got, want in zip(uv_to_pixel(snapped), uv_to_pixel(off)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(snapped[0], pixel_to_uv([FRAME_HEIGHT - 1], [FRAME_WIDTH - 1])[0])
    assert message != UVCoordinates(4, coords=coords[::-1])


def test_uv_coordinates_importance_map():
    importance = np.random.default_rng(0).random((15, 16)) * 3e-4  # e.g. a probability map
    message = UVCoordinates(8, description={"k": "x"}, importance_map=importance)
    assert message.importance_map.shape == (15, 16) and message.importance_map.dtype == np.float32
    assert np.abs(message.importance_map - importance).max() <= importance.max() / 510 * 1.001
    decoded = decode(message.encode())
    assert decoded == message
    assert decoded.importance_map.tobytes() == message.importance_map.tobytes()
    zeros = UVCoordinates(8, coords=np.full((3, 2), 0.5), importance_map=np.zeros((2, 3)))
    assert decode(zeros.encode()) == zeros and not zeros.importance_map.any()
    assert message != UVCoordinates(8, description={"k": "x"})


@pytest.mark.parametrize("kwargs, match", [
    ({}, "neither"),
    ({"description": {"k": 1}, "coords": np.full((2, 2), 0.5)}, "both"),
    ({"coords": np.full((2, 2), 1.5)}, r"\[0, 1\]"),
    ({"coords": np.full((2, 3), 0.5)}, r"expected \(N, 2\)"),
    ({"coords": np.full((2, 2), np.nan)}, r"finite"),
    ({"description": ["k", 1]}, "must be a dict"),
    ({"description": {1: "k"}}, "keys must be str"),
    ({"description": {"k": object()}}, "msgpack"),
    ({"description": {"k": 1}, "importance_map": np.ones(4)}, "2-D"),
    ({"description": {"k": 1}, "importance_map": -np.ones((2, 2))}, "non-negative"),
])
def test_uv_coordinates_rejects_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UVCoordinates(0, **kwargs)


def test_small_messages_round_trip():
    messages = [
        SessionStart("smb1/spt-small", 240, 256, 64, "rgb"),
        SessionStart("k"),
        SessionStartAck("session-0001", True, 500, 64, 15, "spt-small-smb1"),
        SessionStartAck("", False, 1, 58, 59.94, ""),
        Heartbeat(TIMESTAMP_MS),
        HeartbeatAck(TIMESTAMP_MS, TIMESTAMP_MS + 3),
        ErrorMessage(404, "unknown checkpoint_key 'x'"),
        ErrorMessage(-1, "négatif ✓"),
    ]
    for message in messages:
        data = message.encode()
        decoded = decode(data)
        assert type(decoded) is type(message) and decoded == message
        for item in dataclasses.fields(message):
            assert getattr(decoded, item.name) == getattr(message, item.name)
        assert message_size(message) == len(data) <= 64
    assert SessionStartAck("s", True, 500, 64, 15, "v").target_fps == 15.0
    assert Heartbeat(1) != Heartbeat(2) and Heartbeat(1) != HeartbeatAck(1, 1)
    assert ErrorMessage(1, "a") != ErrorMessage(1, "b")
    assert SessionStart("k", color="gray") != SessionStart("k", color="rgb")


@pytest.mark.parametrize("build, match", [
    (lambda: SessionStart("k", color="cmyk"), "unknown color"),
    (lambda: SessionStart("k", max_state_dim=10), "max_state_dim"),
    (lambda: SessionStart(3), "checkpoint_key must be a str"),
    (lambda: SessionStartAck("s", 1, 500, 64, 15, "v"), "checkpoint_loaded must be a bool"),
    (lambda: SessionStartAck("s", True, 0, 64, 15, "v"), "sample_count"),
    (lambda: SessionStartAck("s", True, 500, 64, 0, "v"), "target_fps"),
    (lambda: Heartbeat(1.5), "timestamp_ms must be an integer"),
    (lambda: HeartbeatAck(1, None), "server_time_ms"),
    (lambda: ErrorMessage(True, "x"), "code must be an integer"),
    (lambda: ErrorMessage(1, b"x"), "message must be a str"),
])
def test_small_messages_reject_bad_inputs(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def _z(obj) -> bytes:
    return zlib.compress(msgpack.packb(obj, use_bin_type=True), 9)


@pytest.fixture
def valid_frame():
    state = np.full(64, DEFAULT_SENTINEL, np.float32)
    mask = np.zeros(64, np.float32)
    return FrameData(1, np.full((5, 1), 0.5), state, mask)


def test_decode_rejects_malformed_bytes(valid_frame):
    good = valid_frame.encode()
    cases = [
        (b"", "truncated"),
        (b"definitely not zlib", "zlib decompression failed"),
        (good[:-3], "truncated|zlib"),
        (good + b"\x00", "follow the zlib stream"),
        (zlib.compress(b"\xc1"), "not one msgpack object"),
        (zlib.compress(msgpack.packb({"t": 5, "m": 1}) + b"\x01"), "not one msgpack object"),
        (_z([5, 1]), "expected a msgpack map"),
        (_z({"t": 99, "m": 1}), "unknown type tag 99"),
        (_z({"t": [1], "m": 1}), "unknown type tag"),
        (_z({"m": 1}), "unknown type tag None"),
        (_z({"t": 5}), "Heartbeat.*'m'.*missing"),
        (_z({"t": 5, "m": "now"}), "Heartbeat.*'m'.*type str"),
        (_z({"t": 7, "c": True, "m": "x"}), "ErrorMessage.*'c'"),
        (zlib.compress(bytes(MAX_DECODED_BYTES + 10)), "more than"),
    ]
    payload = _payload(good)
    for key, value, match in [
        ("c", 2, "channels is 2"),
        ("v", b"\x00" * 5, None),  # fine with c=1
        ("s", [0] * 10, "10 entries"),
        ("s", ["x"] + [None] * (FIELDS - 1), "state entry 0"),
        ("d", 30, "max_state_dim 30"),
        ("i", -3, "frame_id"),
    ]:
        if match is not None:
            cases.append((_z({**payload, key: value}), match))
    cases.append((_z({**payload, "c": 3, "v": b"\x00" * 5}), "not a multiple"))
    cases.append((_z({"t": 4, "i": 0, "p": b"\x00\x01\x02"}), "odd number"))
    cases.append((_z({"t": 4, "i": 0, "p": np.array([61440], "<u2").tobytes()}), "past the 240x256"))
    cases.append((_z({"t": 4, "i": 0}), "exactly one of"))
    cases.append((_z({"t": 4, "i": 0, "d": {}, "q": b"\x01\x02", "g": [3, 3], "a": 1.0}), "shape"))
    cases.append((_z({"t": 4, "i": 0, "d": {}, "q": b"\x01\x02", "g": [1, 2], "a": -1.0}), "scale"))
    for data, match in cases:
        with pytest.raises(ValueError, match=match):
            decode(data)
    with pytest.raises(TypeError, match="bytes"):
        decode("a string")
    assert decode(bytearray(good)) == valid_frame and decode(memoryview(good)) == valid_frame


# --- properties (hypothesis): every valid message round-trips; any bytes decode or raise ValueError --------

PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
int64s = st.integers(-(1 << 63), (1 << 63) - 1)
uint63s = st.integers(0, (1 << 63) - 1)
texts = st.text(max_size=40)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def frame_data(draw):
    channels = draw(st.sampled_from([1, 3]))
    count = draw(st.integers(0, 64))
    values = draw(hnp.arrays(np.float32, (count, channels), elements=st.floats(0, 1, width=32)))
    dim = draw(st.integers(FIELDS, 96))
    field_mask = draw(hnp.arrays(np.float32, FIELDS, elements=st.sampled_from([0.0, 1.0])))
    field_values = draw(hnp.arrays(np.float32, FIELDS, elements=st.floats(-1e6, 1e6, width=32)))
    state = np.zeros(dim, np.float32)
    mask = np.zeros(dim, np.float32)
    state[:FIELDS], mask[:FIELDS] = field_values, field_mask
    return FrameData(draw(uint63s), values, state, mask, draw(uint63s),
                     draw(st.floats(-1e9, 1e9, allow_nan=False)))


descriptions = st.recursive(
    st.none() | st.booleans() | int64s | finite_floats | texts | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)


@st.composite
def uv_coordinates(draw):
    frame_id = draw(uint63s)
    importance = draw(st.none() | hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 8)),
                                             elements=st.floats(0, 1e30)))
    if draw(st.booleans()):
        description = draw(st.dictionaries(texts, descriptions, max_size=5))
        return UVCoordinates(frame_id, description=description, importance_map=importance)
    coords = draw(hnp.arrays(np.float32, st.tuples(st.integers(1, 64), st.just(2)), elements=st.floats(0, 1, width=32)))
    return UVCoordinates(frame_id, coords=coords, importance_map=importance)


small_messages = st.one_of(
    st.builds(SessionStart, texts, st.integers(1, 65535), st.integers(1, 65535), st.integers(FIELDS, 65535),
              st.sampled_from(["gray", "rgb"])),
    st.builds(SessionStartAck, texts, st.booleans(), st.integers(1, FRAME_HEIGHT * FRAME_WIDTH),
              st.integers(FIELDS, 65535), st.floats(1e-3, 1e6), texts),
    st.builds(Heartbeat, int64s),
    st.builds(HeartbeatAck, int64s, int64s),
    st.builds(ErrorMessage, int64s, texts),
)
messages = st.one_of(small_messages, frame_data(), uv_coordinates())


@PROPERTY
@given(message=messages)
def test_every_valid_message_round_trips(message):
    data = message.encode()
    decoded = decode(data)
    assert type(decoded) is type(message) and decoded == message
    assert decoded.encode() == data  # nothing is lost or added on a second trip
    assert message_size(message) == len(data)


def decodes_or_raises_value_error(data: bytes) -> None:
    """``decode`` either returns a message or raises ValueError: no other exception escapes it."""
    try:
        decoded = decode(data)
    except ValueError:
        return
    assert isinstance(decoded, tuple(MESSAGE_TYPES.values()))
    assert decode(decoded.encode()) == decoded  # what it accepts is a valid message


@PROPERTY
@given(message=messages, data=st.data())
def test_truncated_or_mutated_messages_decode_or_raise_value_error(message, data):
    encoded = bytearray(message.encode())
    cut = data.draw(st.integers(0, len(encoded) - 1))
    decodes_or_raises_value_error(bytes(encoded[:cut]))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] ^= data.draw(st.integers(1, 255))
    decodes_or_raises_value_error(bytes(encoded))


# Payloads whose zlib and msgpack layers are intact, so the fields themselves are fuzzed: a real tag and
# its keys, each holding any msgpack value (the checksum of random byte flips rejects most of those early).
any_msgpack = st.recursive(
    st.none() | st.booleans() | int64s | st.integers(0, (1 << 64) - 1) | st.floats() | texts | st.binary(max_size=64),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=20,
)
MESSAGE_KEYS = "ikhwdcvsmpqgaelfnt"


@PROPERTY
@given(tag=st.sampled_from(sorted(MESSAGE_TYPES)) | any_msgpack,
       fields=st.dictionaries(st.sampled_from(MESSAGE_KEYS), any_msgpack, max_size=8))
def test_any_msgpack_fields_under_any_tag_decode_or_raise_value_error(tag, fields):
    decodes_or_raises_value_error(_z({**fields, "t": tag}))


@PROPERTY
@given(message=frame_data() | uv_coordinates(), key=st.sampled_from(MESSAGE_KEYS), value=any_msgpack)
def test_one_field_of_a_valid_message_replaced_by_anything_decodes_or_raises_value_error(message, key, value):
    payload = _payload(message.encode())
    assume(key != "t")
    decodes_or_raises_value_error(_z({**payload, key: value}))


@PROPERTY
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_value_error(data):
    decodes_or_raises_value_error(data)
    decodes_or_raises_value_error(zlib.compress(data))
