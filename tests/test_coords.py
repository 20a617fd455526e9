"""The coordinate convention, pixel extraction and fixed patterns (examples and hypothesis properties)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sgaps_env.coords import (FRAME_HEIGHT, FRAME_WIDTH, PATTERNS, extract_pixels, make_pattern, pixel_to_uv,
                              uv_to_pixel, validate_coords)

H, W = FRAME_HEIGHT, FRAME_WIDTH
PROPERTY = settings(max_examples=50, deadline=None)


def address_frame(height=H, width=W):
    """A frame whose every pixel says where it is: red = row, green = column (both < 256), blue = 7."""
    rows, cols = np.indices((height, width))
    return np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


unit_floats = st.floats(0.0, 1.0, width=32)
frame_sizes = st.tuples(st.integers(1, 256), st.integers(1, 256))


def test_pixel_centres_round_trip_for_every_pixel():
    rows, cols = np.divmod(np.arange(H * W), W)
    uv = pixel_to_uv(rows, cols)
    back_rows, back_cols = uv_to_pixel(uv)
    np.testing.assert_array_equal(back_rows, rows)
    np.testing.assert_array_equal(back_cols, cols)


def test_coordinate_edges_map_to_the_owning_pixel():
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [5 / W, 7 / H], [6 / W - 1e-6, 8 / H - 1e-6]], dtype=np.float64)
    rows, cols = uv_to_pixel(coords)
    assert cols.tolist() == [0, W - 1, 5, 5]
    assert rows.tolist() == [0, H - 1, 7, 7]


@PROPERTY
@given(coords=hnp.arrays(np.float32, st.tuples(st.integers(1, 64), st.just(2)), elements=unit_floats))
def test_extract_pixels_reads_the_owning_pixel_and_reports_its_centre(coords):
    frame = address_frame()
    pixels = extract_pixels(frame, coords, "rgb")
    assert pixels.shape == (len(coords), 5) and pixels.dtype == np.float32
    read_rows = np.rint(pixels[:, 2] * 255).astype(int)  # which pixel was read, from its own value
    read_cols = np.rint(pixels[:, 3] * 255).astype(int)
    assert (np.rint(pixels[:, 4] * 255) == 7).all()
    np.testing.assert_allclose(pixels[:, 0], (read_cols + 0.5) / W, rtol=0, atol=1e-7)  # reported at its centre
    np.testing.assert_allclose(pixels[:, 1], (read_rows + 0.5) / H, rtol=0, atol=1e-7)
    # the pixel read owns the requested point: within half a pixel of its centre (u = 1 is the last column)
    assert (np.abs(coords[:, 0] - pixels[:, 0]) <= 0.5 / W + 1e-6).all()
    assert (np.abs(coords[:, 1] - pixels[:, 1]) <= 0.5 / H + 1e-6).all()
    gray = extract_pixels(frame, coords, "gray")
    np.testing.assert_array_equal(gray[:, :2], pixels[:, :2])


@pytest.mark.parametrize("rgb, luma", [((0, 0, 0), 0.0), ((255, 255, 255), 1.0), ((255, 0, 0), 0.299),
                                       ((0, 255, 0), 0.587), ((0, 0, 255), 0.114), ((51, 51, 51), 0.2)])
def test_extract_pixels_gives_bt601_luma_in_gray_and_fractions_of_255_in_rgb(rgb, luma):
    frame = np.zeros((H, W, 3), np.uint8)
    frame[100, 30] = rgb
    coords = pixel_to_uv(np.array([100]), np.array([30]))
    assert extract_pixels(frame, coords, "gray")[0, 2] == pytest.approx(luma, abs=1e-6)
    np.testing.assert_allclose(extract_pixels(frame, coords, "rgb")[0, 2:], np.array(rgb) / 255, atol=1e-7)


def test_extract_pixels_rejects_unknown_color():
    with pytest.raises(ValueError, match="unknown color 'yuv'"):
        extract_pixels(np.zeros((H, W, 3), np.uint8), np.zeros((1, 2)), "yuv")


@PROPERTY
@given(name=st.sampled_from(sorted(PATTERNS)), count=st.integers(1, 5000), seed=st.integers(0, 2**32 - 1))
def test_every_pattern_gives_count_points_in_the_unit_square_spread_over_distinct_places(name, count, seed):
    coords = make_pattern(name, count, np.random.default_rng(seed))
    assert coords.shape == (count, 2) and coords.dtype == np.float32
    assert coords.min() >= 0.0 and coords.max() <= 1.0
    pixel_rows, pixel_cols = uv_to_pixel(coords)
    assert len(set(zip(pixel_rows.tolist(), pixel_cols.tolist()))) == count  # no pixel sampled twice


@PROPERTY
@given(size=frame_sizes, data=st.data())
def test_pixel_centres_round_trip_for_any_frame_size(size, data):
    height, width = size
    rows = np.array(data.draw(st.lists(st.integers(0, height - 1), min_size=1, max_size=50)))
    cols = np.array(data.draw(st.lists(st.integers(0, width - 1), min_size=len(rows), max_size=len(rows))))
    uv = pixel_to_uv(rows, cols, height, width)
    assert uv.min() > 0 and uv.max() < 1
    back_rows, back_cols = uv_to_pixel(uv, height, width)
    np.testing.assert_array_equal(back_rows, rows)
    np.testing.assert_array_equal(back_cols, cols)


@PROPERTY
@given(coords=hnp.arrays(np.float64, st.tuples(st.integers(1, 40), st.just(2)), elements=st.floats(0.0, 1.0)))
def test_any_coordinate_in_the_unit_square_maps_to_a_pixel_of_the_frame(coords):
    rows, cols = uv_to_pixel(coords)
    assert rows.min() >= 0 and rows.max() <= H - 1 and cols.min() >= 0 and cols.max() <= W - 1
    # monotone: a point further right or down never lands in an earlier column or row
    order = np.argsort(coords[:, 0], kind="stable")
    assert (np.diff(cols[order]) >= 0).all()
    order = np.argsort(coords[:, 1], kind="stable")
    assert (np.diff(rows[order]) >= 0).all()


@PROPERTY
@given(coords=hnp.arrays(st.sampled_from([np.float16, np.float32, np.float64]),
                         st.tuples(st.integers(1, 30), st.just(2)), elements=st.floats(0.0, 1.0, width=16)))
def test_validate_coords_keeps_every_valid_coordinate(coords):
    checked = validate_coords(coords, len(coords))
    assert checked.dtype == np.float32 and checked.shape == coords.shape
    np.testing.assert_array_equal(checked, coords.astype(np.float32))


@PROPERTY
@given(coords=hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.just(2)),
                         elements=st.floats(allow_nan=True, allow_infinity=True)),
       clip=st.booleans())
def test_validate_coords_returns_values_in_the_unit_square_or_raises_value_error(coords, clip):
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, which is refused
        as_float32 = coords.astype(np.float32)
    finite = bool(np.isfinite(as_float32).all())
    in_range = bool(as_float32.min() >= 0 and as_float32.max() <= 1) if finite else False
    if not finite or not (clip or in_range):
        with pytest.raises(ValueError, match="NaN or infinite" if not finite else r"outside \[0, 1\]"), \
                np.errstate(over="ignore"):
            validate_coords(coords, len(coords), clip=clip)
        return
    checked = validate_coords(coords, len(coords), clip=clip)
    assert checked.min() >= 0.0 and checked.max() <= 1.0
    np.testing.assert_array_equal(checked, np.clip(as_float32, 0, 1))  # in range: unchanged; else clipped


def test_uniform_grid_cells_are_square_in_pixels():
    coords = make_pattern("uniform_grid", 500)
    column_pitch = np.diff(np.unique(coords[:, 0])).mean() * W
    row_pitch = np.diff(np.unique(coords[:, 1])).mean() * H
    assert abs(column_pitch / row_pitch - 1.0) < 0.1


def test_random_patterns_follow_the_generator():
    for name in ("random", "stratified"):
        first = make_pattern(name, 500, np.random.default_rng(7))
        again = make_pattern(name, 500, np.random.default_rng(7))
        other = make_pattern(name, 500, np.random.default_rng(8))
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first, other)


def test_checkerboard_shifts_alternate_rows_by_half_a_cell():
    coords = make_pattern("checkerboard", 500)
    row_values = np.unique(coords[:, 1])
    first_row = np.sort(coords[coords[:, 1] == row_values[0], 0])
    second_row = np.sort(coords[coords[:, 1] == row_values[1], 0])
    pitch = first_row[1] - first_row[0]
    assert second_row[0] - first_row[0] == pytest.approx(pitch / 2, rel=1e-3)


def test_make_pattern_rejects_unknown_names_and_counts():
    with pytest.raises(ValueError, match="unknown sampling pattern 'spiral'"):
        make_pattern("spiral", 10)
    with pytest.raises(ValueError, match="sample count"):
        make_pattern("random", 0)


@pytest.mark.parametrize("coords, message", [
    (np.zeros((4, 2)), r"shape \(4, 2\), expected \(5, 2\)"),
    (np.zeros((5, 3)), r"shape \(5, 3\)"),
    (np.full((5, 2), np.nan), "NaN or infinite values in 5 of 5 rows"),
    (np.array([[0.5, np.inf]] + [[0.5, 0.5]] * 4), "NaN or infinite values in 1 of 5 rows"),
    (np.array([[1.2, 0.5]] + [[0.5, 0.5]] * 4), r"1 of 5 rows outside \[0, 1\].*clip_coords=True"),
    (np.array([[-0.1, 0.5]] + [[0.5, 0.5]] * 4), r"outside \[0, 1\]"),
])
def test_validate_coords_explains_what_is_wrong(coords, message):
    with pytest.raises(ValueError, match=message):
        validate_coords(coords, 5)


@pytest.mark.parametrize("coords", [
    np.zeros((5, 2), dtype=bool),
    np.zeros((5, 2), dtype=np.complex128),
    np.full((5, 2), 0.5 + 0j, dtype=np.complex64),
    np.full((5, 2), "0.5"),
    np.full((5, 2), b"0.5"),
    np.full((5, 2), 0.5, dtype=object),
    [[True, False]] * 5,
    [["0.5", "0.5"]] * 5,
], ids=["bool", "complex128", "complex64", "str", "bytes", "object", "bool-list", "str-list"])
def test_validate_coords_refuses_what_is_not_a_real_number(coords):
    with pytest.raises(ValueError, match=r"coords has dtype .*expected real numbers"):
        validate_coords(coords, 5)
    with pytest.raises(ValueError, match="expected real numbers"):
        validate_coords(coords, 5, clip=True)  # clipping does not make them numbers


def test_validate_coords_refuses_ragged_rows():
    with pytest.raises(ValueError, match="ragged"):
        validate_coords([[0.5, 0.5], [0.5]], 2)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64, np.uint64, np.float16, np.float64])
def test_validate_coords_accepts_integer_and_float_dtypes(dtype):
    coords = np.array([[0, 1], [1, 0]], dtype=dtype)
    checked = validate_coords(coords, 2)
    assert checked.dtype == np.float32
    np.testing.assert_array_equal(checked, [[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        validate_coords(coords * 2, 2)


def test_validate_coords_clips_only_when_asked():
    coords = np.array([[1.5, -0.5], [0.25, 0.75]])
    np.testing.assert_array_equal(validate_coords(coords, 2, clip=True), [[1.0, 0.0], [0.25, 0.75]])
    with pytest.raises(ValueError, match="NaN"):
        validate_coords(np.array([[np.nan, 0.0], [0.0, 0.0]]), 2, clip=True)


def test_color_for_is_the_inverse_of_channels_for():
    from sgaps_env.coords import COLOR_CHANNELS, channels_for, color_for

    assert {color_for(channels_for(color)) for color in COLOR_CHANNELS} == set(COLOR_CHANNELS)
    with pytest.raises(ValueError, match="no colour mode has 2 channels"):
        color_for(2)
