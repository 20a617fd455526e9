"""The level-agnostic reconstructor (models.tile_reconstructor): its codebook, its decode and its file."""
import numpy as np
import pytest

from models.baselines import make_baseline
from models.metrics import psnr
from models.tile_reconstructor import (BLOCK_PIXELS, DEFAULT_CODEBOOK, HUD_TILES, CodebookCounter,
                                       TileReconstructor, consistent_shapes, load_codebook, matching,
                                       save_codebook)
from models.tile_vocabulary import TILE
from sgaps_env.coords import extract_pixels, frame_values, make_pattern
from sgaps_env.session_file import list_sessions


def test_a_shape_explains_samples_when_equal_colours_share_a_rank():
    shape = (np.arange(TILE * TILE) % 2).astype(np.uint8)[None]  # alternating ranks 0, 1
    positions = np.array([0, 1, 2, 3])
    assert consistent_shapes(shape, positions, np.array([5, 9, 5, 9]))[0]
    assert consistent_shapes(shape, positions, np.array([9, 5, 9, 5]))[0], "the palette is free"
    assert not consistent_shapes(shape, positions, np.array([5, 5, 5, 9])), "one rank, two colours"
    assert not consistent_shapes(shape, positions, np.array([5, 9, 7, 9])), "two colours on one rank"
    flat = np.zeros((1, TILE * TILE), np.uint8)
    assert consistent_shapes(flat, positions, np.array([3, 3, 3, 3]))[0]
    assert not consistent_shapes(flat, positions, np.array([3, 3, 3, 4]))[0]
    blocks = np.stack([np.full(BLOCK_PIXELS, 1), np.arange(BLOCK_PIXELS)])
    assert matching(blocks, np.array([0, 7]), np.array([1, 1])).tolist() == [True, False]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """Two recorded runs of 1-1 from different seeds and starts, and one of 5-1 (a held-out world)."""
    import tyro

    from agents import collect

    path = tmp_path_factory.mktemp("tiles") / "runs.h5"

    def record(stage, seed, steps):
        collect.main(tyro.cli(collect.Args, args=["--output", str(path), "--no-progress", "--workers", "1",
                                                  "--player", "heuristic", "--stages", stage, "--episodes", "1",
                                                  "--max-steps", str(steps), "--store-frames", "--seed", str(seed)]))

    record("1-1", 1, 200)
    record("1-1", 2, 90)
    record("5-1", 3, 90)
    return path, list_sessions([path], None)


def _replay(reconstructor, session, budget, steps=90, color="rgb", seed=0):
    rows = slice(0, steps)
    frames, (states, masks) = session.frames(rows), session.states(rows)
    rng = np.random.default_rng(seed)
    reconstructor.reset()
    scores = []
    for frame, state, mask in zip(frames, states, masks):
        pixels = extract_pixels(frame, make_pattern("random", budget, rng), color)
        output = reconstructor.reconstruct(pixels, state, mask)
        assert output.shape == (240, 256, pixels.shape[1] - 2) and output.dtype == np.float32
        assert np.isfinite(output).all()
        scores.append(psnr(output, frame_values(frame, color)))
    return float(np.mean(scores[10:]))


def test_a_codebook_of_one_run_rebuilds_another_far_better_than_interpolation(sessions, tmp_path):
    path, (train, other, held_out) = sessions
    counter = CodebookCounter()
    counter.add(train.frames(), *train.states())
    with pytest.raises(ValueError, match=r"world\(s\) \[5\]"):
        counter.add(held_out.frames(slice(0, 5)), *held_out.states(slice(0, 5)))
    codebook = counter.codebook(min_count=1)
    assert len(codebook.blocks) > 20 and codebook.hud_digit_slot.shape == (HUD_TILES,)
    save_codebook(tmp_path / "book.npz", codebook, {"split": "test"})
    codebook, metadata = load_codebook(tmp_path / "book.npz")
    assert metadata == {"split": "test"}
    tiles = _replay(TileReconstructor(codebook), other, 500)
    linear = _replay(make_baseline("linear"), other, 500)
    assert tiles > linear + 8.0 and tiles > 25.0, (tiles, linear)
    assert _replay(TileReconstructor(codebook), other, 1000) > _replay(TileReconstructor(codebook), other, 250)
    grey = _replay(TileReconstructor(codebook), other, 500, color="gray")
    assert grey > linear + 5.0, "grey sessions decode with the codebook's colours turned to luma"


def test_the_shipped_codebook_knows_worlds_1_to_4_only_and_rebuilds_a_held_out_world(sessions):
    _, (_, _, held_out) = sessions
    codebook, metadata = load_codebook(DEFAULT_CODEBOOK)
    assert metadata["split"]["training_worlds"] == [1, 2, 3, 4]
    assert metadata["split"]["held_out_worlds"] == [5, 6, 7, 8]
    timer = np.flatnonzero((codebook.hud_digit_slot >= 0) & (codebook.hud_digit_slot < 3))
    assert len(timer) == 3, "the status bar's timer digits follow the state"
    tiles = _replay(TileReconstructor(codebook), held_out, 500)
    linear = _replay(make_baseline("linear"), held_out, 500)
    assert tiles > linear + 8.0, (tiles, linear)


def test_a_broken_codebook_file_is_refused_with_the_reason(tmp_path):
    codebook, metadata = load_codebook(DEFAULT_CODEBOOK)
    with pytest.raises(FileNotFoundError, match="build_codebook"):
        load_codebook(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a tile codebook"):
        load_codebook(tmp_path / "junk.npz")
    arrays = {name: getattr(codebook, name) for name in ("blocks", "block_log_prior", "tiles", "tile_log_prior",
                                                         "shapes", "shape_log_prior", "hud_tiles", "hud_keys",
                                                         "hud_log_prior", "hud_digit_slot", "sprite_colours",
                                                         "sprite_opacity")}
    np.savez(tmp_path / "partial.npz", metadata=np.array("{}"), **{k: v for k, v in arrays.items() if k != "tiles"})
    with pytest.raises(ValueError, match="expected"):
        load_codebook(tmp_path / "partial.npz")
    bad = dict(arrays, blocks=arrays["blocks"].copy())
    bad["blocks"][0, 0] = 2 ** 30
    np.savez(tmp_path / "bad.npz", metadata=np.array("{}"), **bad)
    with pytest.raises(ValueError, match="24-bit colour codes"):
        load_codebook(tmp_path / "bad.npz")
    wrong = dict(arrays, hud_keys=arrays["hud_keys"][:-1])
    np.savez(tmp_path / "wrong.npz", metadata=np.array("{}"), **wrong)
    with pytest.raises(ValueError, match="differ in length"):
        load_codebook(tmp_path / "wrong.npz")


def test_an_atlas_of_a_known_level_is_used_saved_and_checked(sessions, tmp_path):
    from models.memory import StagePriors

    _, (train, other, held_out) = sessions
    atlas = StagePriors.build([(*train.frame_indices(), *train.states())], progress=False)
    atlas.save(tmp_path / "atlas.npz", {"split": "test"})
    loaded, metadata = StagePriors.load(tmp_path / "atlas.npz")
    assert metadata == {"split": "test"} and sorted(loaded.levels) == sorted(atlas.levels) == ["1-1-0"]
    codebook, _ = load_codebook(DEFAULT_CODEBOOK)
    without = _replay(TileReconstructor(codebook), other, 250)
    with_atlas = _replay(TileReconstructor(codebook, atlas=loaded), other, 250)
    assert with_atlas > without + 3.0, (with_atlas, without)
    # a level the atlas lacks is rebuilt from the samples alone, as without one
    assert _replay(TileReconstructor(codebook, atlas=loaded), held_out, 250) == pytest.approx(
        _replay(TileReconstructor(codebook), held_out, 250), abs=1e-6)
    (tmp_path / "junk.npz").write_bytes(b"PK no zip")
    with pytest.raises(ValueError, match="not a level atlas"):
        StagePriors.load(tmp_path / "junk.npz")
    arrays = {f"1-1-0/{name}": array for name, array in atlas.levels["1-1-0"].arrays().items()}
    arrays["1-1-0/index"] = arrays["1-1-0/index"].copy()
    arrays["1-1-0/index"][0, 0] = 250  # past the palette
    np.savez(tmp_path / "bad.npz", metadata=np.array("{}"), **arrays)
    with pytest.raises(ValueError, match="points past"):
        StagePriors.load(tmp_path / "bad.npz")
