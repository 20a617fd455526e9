"""The tile vocabulary: palette-normalised 8x8 background tiles on the level's grid (models.tile_vocabulary)."""
import numpy as np
import pytest

import sgaps_env
from models.tile_vocabulary import TILE, TileVocabulary, canonical_shapes, frame_tiles
from sgaps_env.state import field_ints


def _codes(pattern, colours):
    return np.asarray(colours)[np.asarray(pattern)].reshape(1, TILE * TILE)


def test_a_shape_forgets_the_palette_and_refuses_a_fifth_colour():
    pattern = np.arange(TILE * TILE) % 3
    red, blue = _codes(pattern, [0xFF0000, 0x00FF00, 0x0000FF]), _codes(pattern, [7, 8, 9])
    (shape_red, shape_blue), valid = canonical_shapes(np.concatenate([red, blue]))
    assert valid.all() and np.array_equal(shape_red, shape_blue) and np.array_equal(shape_red, pattern)
    swapped = _codes((pattern + 1) % 3, [1, 2, 3])  # ranks follow first appearance, not colour values
    assert np.array_equal(canonical_shapes(swapped)[0][0], pattern)
    five = _codes(np.arange(TILE * TILE) % 5, [1, 2, 3, 4, 5])
    assert not canonical_shapes(five)[1][0]
    flat = canonical_shapes(np.full((1, TILE * TILE), 42))
    assert flat[1][0] and not flat[0].any()


def _frame_and_camera(steps=24, stage="1-1"):
    env = sgaps_env.SGAPSSuperMarioBrosEnv(stage=stage, sample_count=4, noop_max=0, return_frame=True)
    try:
        env.reset(seed=0)
        for _ in range(steps):
            observation, _, _, _, info = env.step({"buttons": 1, "coords": np.full((4, 2), 0.5, np.float32)})
        return info["frame"], int(field_ints(observation["state"][None], "camera_x")[0])
    finally:
        env.close()


def test_the_grid_follows_the_camera():
    """On the level's own grid the background repeats the fewest distinct tiles; shifted, it splits them."""
    frame, camera = _frame_and_camera()
    assert camera % TILE != 0, "a camera between tile boundaries makes the test meaningful"

    def distinct(offset):
        shapes, valid = frame_tiles(frame, camera + offset)
        return len({bytes(shape) for shape in shapes[valid]})

    shapes, valid = frame_tiles(frame, camera)
    assert shapes.shape == (26, 31, TILE * TILE) and valid.mean() > 0.95
    assert all(distinct(0) < distinct(offset) for offset in range(1, TILE))
    with pytest.raises(ValueError, match="uint8"):
        frame_tiles(frame.astype(np.float32), camera)


def test_a_vocabulary_counts_worlds_1_to_4_and_refuses_5_to_8(tmp_path):
    import tyro

    from agents import collect

    def record(output, stage, seed):
        collect.main(tyro.cli(collect.Args, args=["--output", str(output), "--no-progress", "--workers", "1",
                                                  "--stages", stage, "--episodes", "1", "--max-steps", "20",
                                                  "--store-frames", "--seed", str(seed)]))

    record(tmp_path / "a.h5", "1-1", 1)
    record(tmp_path / "a.h5", "6-1", 1)
    with pytest.raises(ValueError, match=r"world\(s\) \[6\]"):
        TileVocabulary.from_session_files([tmp_path / "a.h5"], split=None, progress=False)
    vocabulary = TileVocabulary.from_session_files([tmp_path / "a.h5"], split=None, skip_held_out=True,
                                                   progress=False)
    assert 10 < len(vocabulary) < 1000
    frame, camera = _frame_and_camera(steps=30)
    shapes, valid = frame_tiles(frame, camera)
    assert vocabulary.known(shapes[valid]).mean() > 0.9, "1-1 a little further on is mostly known tiles"
    unknown = np.full((1, TILE * TILE), 3, np.uint8)
    unknown[0, 0] = 0
    assert not vocabulary.known(unknown)[0]
