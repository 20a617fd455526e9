"""The coordinate convention, pixel extraction and fixed patterns."""
import numpy as np
import pytest

from sgaps_env.coords import (BT601_LUMA, FRAME_HEIGHT, FRAME_WIDTH, PATTERNS, extract_pixels, make_pattern,
                              pixel_to_uv, uv_to_pixel, validate_coords)

H, W = FRAME_HEIGHT, FRAME_WIDTH


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


def test_extract_pixels_reads_values_at_centres_in_gray_and_rgb(rng):
    frame = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    coords = np.array([[0.1, 0.2], [0.99, 0.01], [0.5, 0.5]], dtype=np.float32)
    rows, cols = uv_to_pixel(coords)
    gray = extract_pixels(frame, coords, "gray")
    rgb = extract_pixels(frame, coords, "rgb")
    assert gray.shape == (3, 3) and rgb.shape == (3, 5)
    assert gray.dtype == np.float32 and rgb.dtype == np.float32
    np.testing.assert_allclose(gray[:, :2], pixel_to_uv(rows, cols))
    np.testing.assert_allclose(rgb[:, 2:], frame[rows, cols] / 255.0, atol=1e-6)
    np.testing.assert_allclose(gray[:, 2], frame[rows, cols] @ BT601_LUMA / 255.0, atol=1e-6)


def test_extract_pixels_rejects_unknown_color():
    with pytest.raises(ValueError, match="unknown color 'yuv'"):
        extract_pixels(np.zeros((H, W, 3), np.uint8), np.zeros((1, 2)), "yuv")


@pytest.mark.parametrize("name", sorted(PATTERNS))
@pytest.mark.parametrize("count", [1, 250, 500, 1000])
def test_patterns_give_count_distinct_in_range_points(name, count, rng):
    coords = make_pattern(name, count, rng)
    assert coords.shape == (count, 2) and coords.dtype == np.float32
    assert coords.min() >= 0.0 and coords.max() <= 1.0
    rows, cols = uv_to_pixel(coords)
    assert len(set(zip(rows.tolist(), cols.tolist()))) == count


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


def test_stratified_puts_at_most_one_point_per_cell():
    from sgaps_env.coords import _grid_shape

    rows, cols = _grid_shape(500, H, W)
    coords = make_pattern("stratified", 500, np.random.default_rng(0))
    cells = np.minimum((coords[:, 1] * rows).astype(int), rows - 1) * cols + np.minimum((coords[:, 0] * cols).astype(int), cols - 1)
    assert len(np.unique(cells)) == 500


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


def test_validate_coords_clips_only_when_asked():
    coords = np.array([[1.5, -0.5], [0.25, 0.75]])
    np.testing.assert_array_equal(validate_coords(coords, 2, clip=True), [[1.0, 0.0], [0.25, 0.75]])
    with pytest.raises(ValueError, match="NaN"):
        validate_coords(np.array([[np.nan, 0.0], [0.0, 0.0]]), 2, clip=True)
