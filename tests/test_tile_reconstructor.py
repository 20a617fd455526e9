"""The level-agnostic reconstructor (models.tile_reconstructor): its codebook, its decode and its file."""
from dataclasses import replace

import numpy as np
import pytest

from models.baselines import make_baseline
from models.metrics import psnr
from models.tile_reconstructor import (BLOCK_PIXELS, DEFAULT_CODEBOOK, HUD_TILES, MAYBE_ROTATING, ROTATING, ROTATION_SLOT,
                                       CodebookCounter, TileReconstructor, blinking_pixels, consistent_shapes,
                                       load_codebook, matching, merge_samples, save_codebook)
from models.tile_vocabulary import TILE, colour_codes
from sgaps_env.coords import extract_pixels, frame_values, make_pattern, pixel_to_uv
from sgaps_env.session_file import list_sessions
from sgaps_env.sprites import HUD_ROWS, ROTATION_COLOURS, area_key, camera_x, rotation_phase


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


def test_samples_of_the_rotating_colour_may_blink_and_two_of_them_must():
    orange, brown, brick = 0xFCA044, 0xE45C10, 0x123456
    old = np.array([-1, orange | MAYBE_ROTATING, orange | MAYBE_ROTATING, ROTATING, brick, brown | MAYBE_ROTATING])
    new = np.array([brick, brown | MAYBE_ROTATING, orange, orange | MAYBE_ROTATING, orange | MAYBE_ROTATING, brown])
    stored, clash = merge_samples(old, new)
    assert stored.tolist()[:4] == [brick, ROTATING, orange, ROTATING] and stored[5] == brown
    assert clash.tolist() == [False, False, False, False, True, False], "a brick pixel cannot blink"
    drawn = np.array([[ROTATING, ROTATING], [orange, brown], [brown, brown]])
    assert matching(drawn, np.array([0, 1]), np.array([orange | MAYBE_ROTATING, brown | MAYBE_ROTATING])).tolist() \
        == [True, True, False]
    assert matching(drawn, np.array([0, 1]), np.array([orange, brown])).tolist() == [False, True, False], \
        "a plain sample is not this step's rotating colour, so the pixel does not blink"


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
    coin = np.flatnonzero(codebook.hud_digit_slot == ROTATION_SLOT)
    assert len(coin) == 1, "only the coin blinks: the area type in its key must not make every tile follow it"
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
                                                         "hud_log_prior", "hud_digit_slot", "sprite_appearances",
                                                         "sprite_poses", "sprite_log_prior", "sprite_context_log_prior",
                                                         "firebar_keys", "firebar_log_prior", "firebar_pixels")}
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
    far = dict(arrays, firebar_pixels=arrays["firebar_pixels"].copy())
    far["firebar_pixels"][0, 1] = 10 ** 6  # an offset that would draw a million rows away
    np.savez(tmp_path / "far.npz", metadata=np.array("{}"), **far)
    with pytest.raises(ValueError, match="offsets inside a frame"):
        load_codebook(tmp_path / "far.npz")


def test_an_atlas_of_a_known_level_is_used_saved_and_checked(sessions, tmp_path):
    from models.memory import StagePriors

    _, (train, other, held_out) = sessions
    atlas = StagePriors.build([(*train.frame_indices(), *train.states())], progress=False)
    atlas.save(tmp_path / "atlas.npz", {"split": "test"})
    loaded, metadata = StagePriors.load(tmp_path / "atlas.npz")
    assert metadata == {"split": "test"} and sorted(loaded.levels) == sorted(atlas.levels) == ["1-1-0-ground"]
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
    arrays = {f"1-1-0-ground/{name}": array for name, array in atlas.levels["1-1-0-ground"].arrays().items()}
    arrays["1-1-0-ground/index"] = arrays["1-1-0-ground/index"].copy()
    arrays["1-1-0-ground/index"][0, 0] = 250  # past the palette
    np.savez(tmp_path / "bad.npz", metadata=np.array("{}"), **arrays)
    with pytest.raises(ValueError, match="points past"):
        StagePriors.load(tmp_path / "bad.npz")


def test_an_atlas_of_first_sightings_holds_the_level_as_it_starts(sessions):
    """A pixel that changes for good a few steps in (a ?-block hit, a coin taken) keeps its first colour in an atlas
    whose sessions vote only their first sightings of a pixel, and takes the new one in an atlas of every frame."""
    from models.memory import StagePriors

    _, (train, _, _) = sessions
    indices, palette = train.frame_indices()
    states, masks = train.states()
    row, column = HUD_ROWS + 30, 200  # sky, above where the player jumps
    level_x = camera_x(states[0]) + column
    before = int(indices[0, row, column])
    after = next(i for i in range(len(palette)) if (palette[i] != palette[before]).any())
    changed = indices.copy()
    shown = 0
    for step in range(len(indices)):
        on_screen = level_x - camera_x(states[step])
        if 0 <= on_screen < indices.shape[2]:
            shown += 1
            if step >= 5:
                changed[step, row, on_screen] = after
    assert shown >= 30, "the pixel must stay on screen a while for the test to mean anything"

    def atlas_colour(first_sightings):
        atlas = StagePriors.build([(changed, palette, states, masks)], progress=False, first_sightings=first_sightings)
        level = atlas.levels[area_key(states[0])]
        return level.palette[level.index[row - HUD_ROWS, level_x]].tolist()

    assert atlas_colour(None) == palette[after].tolist(), "every frame: the level as the session left it"
    assert atlas_colour(4) == palette[before].tolist(), "first sightings: the level as it started"


def test_blinking_blocks_are_counted_once_and_drawn_in_the_frame_s_rotation_colour(sessions):
    _, (train, other, _) = sessions
    frames, (states, masks) = train.frames(), train.states()
    # the rotation colours follow the state's step: the status bar's coin shows them
    coin = [colour_codes(frame[24:32, 88:96]) for frame in frames]
    phases = [rotation_phase(state, mask) for state, mask in zip(states, masks)]
    shown = [colour_codes(ROTATION_COLOURS[phase]) in tile for tile, phase in zip(coin, phases) if phase is not None]
    assert len(shown) > 60 and np.mean(shown) > 0.95
    blinking = blinking_pixels(colour_codes(frames), states, masks)["1-1-0-ground"]
    assert 0 < blinking.sum() < 0.01 * blinking.size, "the faces of ?-blocks blink; the level does not"
    counter = CodebookCounter()
    counter.add(frames, states, masks)
    codebook = counter.codebook(min_count=1)
    assert (codebook.blocks == ROTATING).any(axis=1).sum() >= 1
    # replayed on the other run, the blinking pixels are drawn in each frame's colour, which a codebook whose
    # blinking pixels hold one fixed colour (a codebook blind to the rotation) cannot do
    blind = replace(codebook, blocks=np.where(codebook.blocks == ROTATING, colour_codes(ROTATION_COLOURS[1]),
                                              codebook.blocks))
    rows = slice(0, 90)
    frames, (states, masks) = other.frames(rows), other.states(rows)
    truth_blinking = blinking_pixels(colour_codes(frames), states, masks).get("1-1-0-ground")
    errors = {}
    for name, book in (("aware", codebook), ("blind", blind)):
        reconstructor, rng, error = TileReconstructor(book), np.random.default_rng(0), []
        for step, (frame, state, mask) in enumerate(zip(frames, states, masks)):
            output = reconstructor.reconstruct(extract_pixels(frame, make_pattern("random", 500, rng), "rgb"), state,
                                               mask)
            camera = camera_x(state)
            where = truth_blinking[:, camera:camera + 256]
            if step >= 10 and where.any():
                error.append(np.abs(output[HUD_ROWS:][where] - frame_values(frame, "rgb")[HUD_ROWS:][where]).mean())
        errors[name] = float(np.mean(error))
    assert errors["aware"] < 0.5 * errors["blind"], errors


def test_a_block_that_changed_is_named_again_from_its_new_samples(sessions):
    from sgaps_env.coords import pixel_to_uv
    from sgaps_env.sprites import box_mask, sprite_boxes

    _, (train, _, _) = sessions
    states, masks = train.states(slice(0, 1))
    state, mask = states[0], masks[0]
    top, left = HUD_ROWS + 16, 80  # a 16x16 block of the level on screen (the camera is on the block grid)
    assert camera_x(state) % 16 == 0 and not box_mask(sprite_boxes(state, mask), margin=4)[top:top + 16, left:left + 16].any()
    sky, brick = np.array([16, 16, 16], np.uint8), np.array([48, 48, 48], np.uint8)
    flat = lambda colour, size: np.full((1, size), colour_codes(colour), np.int32)  # noqa: E731
    # the shipped status bar and sprites, and a background of two flat blocks: sky (common) and brick
    codebook = replace(load_codebook(DEFAULT_CODEBOOK)[0],
                       blocks=np.concatenate([flat(sky, BLOCK_PIXELS), flat(brick, BLOCK_PIXELS)]),
                       block_log_prior=np.log(np.array([0.9, 0.1], np.float32)),
                       tiles=np.concatenate([flat(sky, TILE * TILE), flat(brick, TILE * TILE)]),
                       tile_log_prior=np.log(np.array([0.9, 0.1], np.float32)),
                       shapes=np.zeros((1, TILE * TILE), np.uint8), shape_log_prior=np.zeros(1, np.float32))
    reconstructor = TileReconstructor(codebook)
    positions = np.random.default_rng(0).permutation(BLOCK_PIXELS)
    for step in range(7):  # six steps of sky, then the block turns to brick where nothing was sampled yet
        frame = np.broadcast_to(sky, (240, 256, 3)).copy()
        if step == 6:
            frame[top:top + 16, left:left + 16] = brick
        chosen = positions[step * 8:(step + 1) * 8]
        coords = pixel_to_uv(top + chosen // 16, left + chosen % 16)
        output = reconstructor.reconstruct(extract_pixels(frame, coords, "rgb"), state, mask)
    assert np.allclose(output[top:top + 16, left:left + 16], brick / 255.0), \
        "the block's older samples belong to a state that is gone"


def test_a_block_under_a_known_block_follows_what_this_session_put_under_it(sessions):
    from sgaps_env.coords import pixel_to_uv
    from sgaps_env.sprites import box_mask, sprite_boxes

    _, (train, _, _) = sessions
    states, masks = train.states(slice(0, 1))
    state, mask = states[0], masks[0]
    upper, lower, third = HUD_ROWS + 32, HUD_ROWS + 48, HUD_ROWS + 64  # block rows of the level; screen columns 8-15
    assert camera_x(state) % 16 == 0 and not box_mask(sprite_boxes(state, mask), margin=4)[upper:third + 16, 128:].any()
    sky, top, dirt, rock = (np.array(c, np.uint8) for c in ([16, 16, 16], [200, 40, 40], [90, 60, 30], [60, 60, 60]))
    code = lambda colour: int(colour_codes(colour))  # noqa: E731
    half = np.repeat([0, 1], BLOCK_PIXELS // 2)  # top half 0, bottom half 1
    blocks = np.stack([np.full(BLOCK_PIXELS, code(sky)), np.full(BLOCK_PIXELS, code(top)),
                       np.full(BLOCK_PIXELS, code(dirt)), np.where(half == 0, code(dirt), code(rock))]).astype(np.int32)
    # dirt over rock is the codebook's favourite and the level's most used block (the third row); but under its
    # red tops this level puts plain dirt
    codebook = replace(load_codebook(DEFAULT_CODEBOOK)[0], blocks=blocks,
                       block_log_prior=np.log(np.array([0.6, 0.1, 0.05, 0.25], np.float32)))
    frame = np.broadcast_to(sky, (240, 256, 3)).copy()
    frame[upper:upper + 16, 128:] = top
    frame[lower:lower + 16, 128:] = dirt
    frame[third:third + 8, 128:], frame[third + 8:third + 16, 128:] = dirt, rock
    rng = np.random.default_rng(0)

    def replay(reconstructor):
        for step in range(8):  # columns 8-14 fully seen, then column 15's lower block only on its top half
            rows, cols = np.mgrid[upper:third + 16, 128:256].reshape(2, -1)
            keep = ~((rows >= upper) & (rows < third) & (cols >= 240))  # column 15's top two blocks unseen
            rows, cols = rows[keep], cols[keep]
            pick = rng.choice(len(rows), 600, replace=False)
            rows, cols = rows[pick], cols[pick]
            if step == 7:
                rows, cols = lower + rng.integers(0, 8, 6), 240 + rng.integers(0, 16, 6)
                rows, cols = np.r_[rows, upper + rng.integers(0, 16, 6)], np.r_[cols, 240 + rng.integers(0, 16, 6)]
            output = reconstructor.reconstruct(extract_pixels(frame, pixel_to_uv(rows, cols), "rgb"), state, mask)
        return output[lower + 8:lower + 16, 240:256]

    assert np.allclose(replay(TileReconstructor(codebook)), dirt / 255.0), "this session's pairs decide"
    assert np.allclose(replay(TileReconstructor(codebook, pair_weight=0.0)), rock / 255.0), "the codebook's prior"


def test_a_sprite_is_counted_as_its_exact_appearance_and_drawn_as_the_one_its_samples_pick(sessions):
    from models.tile_reconstructor import SpriteAppearances, session_backgrounds
    from sgaps_env.sprites import TEMPLATE_SIZE, sprite_boxes, template_windows

    _, (train, _, _) = sessions
    frames, (states, masks) = train.frames(), train.states()
    codes = colour_codes(frames)
    backgrounds = session_backgrounds(codes, states, masks)
    step = next(t for t in range(20, len(frames)) if [b.kind for b in sprite_boxes(states[t], masks[t])] == ["player"])
    counter = SpriteAppearances()
    counter.add(codes[step], states[step], masks[step], backgrounds)
    appearances, poses, _, _ = counter.appearances(min_sightings=1)
    (box,) = sprite_boxes(states[step], masks[step])
    ((pose, top, left),) = template_windows([box])
    assert poses.tolist() == [pose]
    height, width = TEMPLATE_SIZE
    truth = codes[step, top:top + height, left:left + width]
    mario = appearances[0] >= 0
    assert 60 < mario.sum() < 400, "small Mario's pixels, not his box's background"
    np.testing.assert_array_equal(appearances[0][mario], truth[mario])

    # the pose's appearances: Mario mirrored (the more frequent) and as he is; the samples decide
    mirrored = appearances[0][:, ::-1]
    codebook, _ = load_codebook(DEFAULT_CODEBOOK)
    book = replace(codebook, sprite_appearances=np.stack([mirrored, appearances[0]]),
                   sprite_poses=np.array([pose, pose], np.int32),
                   sprite_log_prior=np.log(np.array([0.9, 0.1], np.float32)), sprite_context_log_prior=None)
    rows, cols = np.nonzero(mario)
    sampled = (rows + cols) % 2 == 0  # every other pixel of Mario is sampled, the others must be drawn
    pixels = extract_pixels(frames[step], pixel_to_uv(rows[sampled] + top, cols[sampled] + left), "rgb")
    truth_values = frame_values(frames[step], "rgb")[rows[~sampled] + top, cols[~sampled] + left]
    differs = (mirrored[rows[~sampled], cols[~sampled]] != truth[rows[~sampled], cols[~sampled]])
    assert differs.sum() > 20

    def drawn(**options):
        reconstructor = TileReconstructor(book, **options)
        output = reconstructor.reconstruct(pixels, states[step], masks[step])
        return output[rows[~sampled] + top, cols[~sampled] + left]

    np.testing.assert_allclose(drawn(), truth_values, atol=1e-6)
    ignoring = drawn(sprite_miss_probability=1.0)
    assert (np.abs(ignoring - truth_values).sum(axis=1) > 1e-3)[differs].all(), "without its samples: the frequent one"

    # the appearance context (animation phase, moving direction): the one seen in this context, though rarer overall
    from sgaps_env.sprites import APPEARANCE_CONTEXTS, appearance_context

    context = appearance_context(box, states[step], masks[step])
    by_context = np.tile(np.log(np.array([[0.9], [0.1]], np.float32)), (1, APPEARANCE_CONTEXTS))
    by_context[:, context] = np.log([0.2, 0.8])
    book = replace(book, sprite_context_log_prior=by_context)
    np.testing.assert_allclose(drawn(sprite_miss_probability=1.0), truth_values, atol=1e-6)


def test_a_goomba_s_side_is_drawn_from_its_moving_direction_as_the_context_prior_says(sessions):
    """SMB draws a walking Goomba mirrored every 8 frames relative to the way it moves (the state's
    ``enemy{slot}_moving_dir``, docs/reconstructor.md has the measurement): its sightings are counted per direction,
    and with no sample in its window the side drawn is the one its context's prior names."""
    from models.tile_reconstructor import SpriteAppearances, session_backgrounds
    from sgaps_env.sprites import (ANIMATION_PHASES, APPEARANCE_CONTEXTS, ENEMY_TYPES, MOVING_DIRECTIONS,
                                   PLAYER_POSES, TEMPLATE_SIZE, appearance_context, sprite_boxes, template_windows)
    from sgaps_env.state import STATE_INDEX, STATE_SCALE

    _, (train, _, _) = sessions
    frames, (states, masks) = train.frames(), train.states()
    codes = colour_codes(frames)
    backgrounds = session_backgrounds(codes, states, masks)
    counter = SpriteAppearances()
    for step in range(len(frames)):
        counter.add(codes[step], states[step], masks[step], backgrounds)
    goomba_pose = PLAYER_POSES + 1 * ENEMY_TYPES + 0x06  # a Goomba in a ground level's colours
    counted = {context // ANIMATION_PHASES % MOVING_DIRECTIONS for _, context in counter.context_counts[goomba_pose]}
    assert counted == {1, 2}, "walking left, and right after turning on a pipe: counted under each direction"
    appearances, poses, _, _ = counter.appearances(min_sightings=1)
    left_side, right_side = appearances[np.flatnonzero(poses == goomba_pose)[:2]]  # its two most frequent sides
    shown = np.flatnonzero((left_side >= 0).any(axis=0))
    np.testing.assert_array_equal(left_side[:, shown[0]:shown[-1] + 1][:, ::-1], right_side[:, shown[0]:shown[-1] + 1])

    step, box, top, left = next((step, box, top, left) for step in range(len(frames))
                                for box, (pose, top, left) in zip(sprite_boxes(states[step], masks[step]),
                                                                  template_windows(sprite_boxes(states[step],
                                                                                                masks[step])))
                                if pose == goomba_pose and top >= HUD_ROWS and 0 <= left <= 256 - TEMPLATE_SIZE[1])
    codebook, _ = load_codebook(DEFAULT_CODEBOOK)
    by_context = np.log(np.full((2, APPEARANCE_CONTEXTS), 0.5, np.float32))
    by_context[:, ANIMATION_PHASES:2 * ANIMATION_PHASES] = np.log([[0.1], [0.9]])  # moving right: the right side
    by_context[:, 2 * ANIMATION_PHASES:] = np.log([[0.9], [0.1]])  # moving left: the left side
    book = replace(codebook, sprite_appearances=np.stack([left_side, right_side]),
                   sprite_poses=np.array([goomba_pose] * 2, np.int32),
                   sprite_log_prior=np.log(np.array([0.5, 0.5], np.float32)), sprite_context_log_prior=by_context)
    pixels = extract_pixels(frames[step], pixel_to_uv(np.array([HUD_ROWS]), np.array([0])), "rgb")  # none on it
    for direction, side in ((1, right_side), (2, left_side)):
        state = states[step].copy()
        state[STATE_INDEX[f"enemy{box.slot}_moving_dir"]] = direction / STATE_SCALE[f"enemy{box.slot}_moving_dir"]
        (moved,) = [other for other in sprite_boxes(state, masks[step])
                    if other.kind == "enemy" and other.slot == box.slot]
        assert appearance_context(moved, state, masks[step]) // ANIMATION_PHASES == direction
        output = TileReconstructor(book).reconstruct(pixels, state, masks[step])
        drawn = colour_codes(output[top:top + TEMPLATE_SIZE[0], left:left + TEMPLATE_SIZE[1]])
        np.testing.assert_array_equal(drawn[side >= 0], side[side >= 0], f"moving {direction}: the other side")


def test_a_sprite_s_motion_since_the_step_before_picks_where_in_its_window_it_is_drawn(sessions):
    """SMB draws an object where it stood a frame before, so how far an enemy moved over the last step is part of
    its appearance's context (:func:`sgaps_env.sprites.with_motion`): the reconstructor remembers the step before,
    and a fresh one, which does not know it, draws the appearance the unknown motion's prior names."""
    from sgaps_env.sprites import (ANIMATION_PHASES, APPEARANCE_CONTEXTS, MOVING_DIRECTIONS, TEMPLATE_SIZE,
                                   sprite_boxes, template_windows, with_motion)

    _, (train, _, _) = sessions
    frames, (states, masks) = train.frames(), train.states()

    def goomba(step):
        boxes = with_motion(sprite_boxes(states[step], masks[step]), states[step], states[step - 1], masks[step - 1])
        return next(((box, top, left) for box, (pose, top, left) in zip(boxes, template_windows(boxes))
                     if box.kind == "enemy" and box.motion > 0 and top >= HUD_ROWS
                     and 0 <= left <= 256 - TEMPLATE_SIZE[1]), None)

    step = next(step for step in range(1, len(frames)) if goomba(step) is not None)
    box, top, left = goomba(step)
    level_x = box.x + camera_x(states[step])
    (before,) = [other for other in sprite_boxes(states[step - 1], masks[step - 1])
                 if other.kind == "enemy" and other.slot == box.slot]
    moved = level_x - (before.x + camera_x(states[step - 1]))
    assert box.motion == (1 if moved <= -3 else 2 if moved < 0 else 3 if moved == 0 else 4 if moved < 3 else 5)

    drawn_here = np.full(TEMPLATE_SIZE, -1, np.int32)
    drawn_here[10:20, 8:16] = 0xFC0000  # a red patch where this motion puts it
    drawn_there = np.roll(drawn_here, 3, axis=1)
    codebook, _ = load_codebook(DEFAULT_CODEBOOK)
    by_context = np.log(np.full((2, APPEARANCE_CONTEXTS), 0.5, np.float32))
    motion_of_context = np.arange(APPEARANCE_CONTEXTS) // (ANIMATION_PHASES * MOVING_DIRECTIONS)
    by_context[:, motion_of_context == box.motion] = np.log([[0.9], [0.1]])
    by_context[:, motion_of_context != box.motion] = np.log([[0.1], [0.9]])
    book = replace(codebook, sprite_appearances=np.stack([drawn_here, drawn_there]),
                   sprite_poses=np.array([box.pose] * 2, np.int32), sprite_log_prior=np.log(np.full(2, 0.5, np.float32)),
                   sprite_context_log_prior=by_context)
    pixels = extract_pixels(frames[step], pixel_to_uv(np.array([HUD_ROWS]), np.array([0])), "rgb")  # none on it

    def drawn(steps):
        reconstructor = TileReconstructor(book)
        for t in steps:
            output = reconstructor.reconstruct(pixels, states[t], masks[t])
        window = colour_codes(output[top:top + TEMPLATE_SIZE[0], left:left + TEMPLATE_SIZE[1]])
        return [bool((window[side >= 0] == side[side >= 0]).all()) for side in (drawn_here, drawn_there)]

    assert drawn([step - 1, step]) == [True, False], "the step before known: drawn where its motion puts it"
    assert drawn([step]) == [False, True], "no step before: the motion is not known"


def test_the_status_bar_prefers_the_colours_its_area_shows_over_a_few_stray_samples():
    codebook, _ = load_codebook(DEFAULT_CODEBOOK)
    sky, white, black = 0x6888FC, 0xFCFCFC, 0x000000
    reconstructor = TileReconstructor(codebook)
    reconstructor._hud_colours = {sky: 1340, white: 130, black: 2}  # two black samples on a sprite's edge
    on_sky, on_black = np.full((1, 64), sky), np.full((1, 64), black)
    on_sky[0, :10] = on_black[0, :10] = white  # a digit's white glyph on either background
    weights = reconstructor._status_colour_weights(np.concatenate([on_sky, on_black]))
    assert weights[0] == 1.0 and weights[1] < 0.2, weights


def test_the_atlas_holds_an_area_first_seen_far_into_it_and_skips_a_rewinding_camera(sessions):
    from models.memory import StagePriors
    from sgaps_env.state import STATE_INDEX, STATE_SCALE

    _, (train, _, _) = sessions
    frames, palette = train.frame_indices(slice(0, 30))
    states, masks = train.states(slice(0, 30))
    camera = STATE_INDEX["camera_x"]
    far = states.copy()
    far[:, camera] = 600 / STATE_SCALE["camera_x"]  # a sub-area entered at camera x 600 (1-2's exit, say)
    level = StagePriors.build([(frames, palette, far, masks)], progress=False).levels["1-1-0-ground"]
    assert level.index.shape[1] == 600 + 256, "the level's canvas reaches the screen, the status bar apart"
    assert (level.confidence[:, 600:] > 0).mean() > 0.5 and (level.confidence[:, :600] == 0).all()
    rewinding = states.copy()
    rewinding[:, camera] = (0xFF * 256 + 160) / STATE_SCALE["camera_x"]  # 4-4's maze: page 0xFF
    assert len(StagePriors.build([(frames, palette, rewinding, masks)], progress=False)) == 0


@pytest.fixture(scope="module")
def castle(tmp_path_factory):
    """3-4 followed along its shipped demonstration to its first fire bar, which the state gives a spin step."""
    import tyro

    from agents import collect

    path = tmp_path_factory.mktemp("castle") / "castle.h5"
    collect.main(tyro.cli(collect.Args, args=[
        "--output", str(path), "--no-progress", "--workers", "1", "--player", "demonstration", "--buttons", "complex",
        "--player-option", "follow_probability=1.0", "--stages", "3-4", "--episodes", "1", "--max-steps", "40",
        "--store-frames", "--seed", "4"]))
    (session,) = list_sessions([path], None)
    return session


def _firebar_in_view(session):
    """The first step whose fire bar's whole square is on screen, and that bar's box."""
    from models.tile_reconstructor import firebar_window
    from sgaps_env.sprites import sprite_boxes

    states, masks = session.states()
    for step in range(len(states)):
        for box in sprite_boxes(states[step], masks[step]):
            if box.kind != "firebar" or box.spin < 0:
                continue
            row, col, reach = firebar_window(box)
            if row - reach >= HUD_ROWS and row + reach <= 240 and 0 <= col - reach and col + reach <= 256:
                return step, box
    raise AssertionError("no fire bar in full view: record more steps of 3-4")


def test_a_fire_bar_is_counted_by_spin_step_and_drawn_as_the_appearance_its_samples_pick(castle):
    from models.tile_reconstructor import FirebarAppearances, firebar_key, firebar_window, session_backgrounds
    from sgaps_env.sprites import FIREBAR_PIVOT_BALL

    frames, (states, masks) = castle.frames(), castle.states()
    codes = colour_codes(frames)
    backgrounds = session_backgrounds(codes, states, masks)
    step, box = _firebar_in_view(castle)
    counter = FirebarAppearances()
    counter.add(codes[step], states[step], masks[step], backgrounds)
    keys, _, pixels = counter.appearances(min_sightings=1)
    assert keys.tolist() == [firebar_key(states[step], box)]
    row, col, reach = firebar_window(box)
    rows, cols = pixels[:, 1] + row, pixels[:, 2] + col
    np.testing.assert_array_equal(pixels[:, 3], codes[step, rows, cols], "the frame's own pixels")
    assert 100 < len(pixels) < 600, "six balls, not the square's background"
    assert np.hypot(pixels[:, 1], pixels[:, 2]).max() > 30, "the balls far from the pivot are in it"
    ball_top, ball_left, height, width = FIREBAR_PIVOT_BALL
    pivot = {(box.y + ball_top + dy - row, box.x + ball_left + dx - col) for dy in range(height) for dx in range(width)}
    assert pivot <= set(zip(pixels[:, 1].tolist(), pixels[:, 2].tolist())), "the pivot's ball, though it never moves"

    # the blocks under its square are counted as the session's background shows them: the pivot's, ball and all
    counter = CodebookCounter()
    counter.add(frames, states, masks)
    level_x = box.x + camera_x(states[step])
    top, left = (box.y + ball_top - HUD_ROWS) // 16 * 16, level_x // 16 * 16
    pivot_block = backgrounds[area_key(states[step])][top:top + 16, left:left + 16].astype(np.int32)
    assert (pivot_block >= 0).all() and counter.blocks[pivot_block.ravel().tobytes()] > 0

    # two appearances of its spin step: the bar half a turn round (the more frequent) and as it is
    turned = pixels.copy()
    turned[:, 0], turned[:, 1:3] = 0, -pixels[:, 1:3]
    shown = pixels.copy()
    shown[:, 0] = 1
    codebook, _ = load_codebook(DEFAULT_CODEBOOK)
    book = replace(codebook, firebar_keys=np.array([keys[0], keys[0]], np.int32),
                   firebar_log_prior=np.log(np.array([0.9, 0.1], np.float32)),
                   firebar_pixels=np.concatenate([turned, shown]))
    sampled = np.arange(len(pixels)) % 4 == 0  # a quarter of the balls' pixels are sampled, the rest must be drawn
    samples = extract_pixels(frames[step], pixel_to_uv(rows[sampled], cols[sampled]), "rgb")
    truth = frame_values(frames[step], "rgb")[rows[~sampled], cols[~sampled]]

    def drawn(**options):
        reconstructor = TileReconstructor(book, **options)
        output = reconstructor.reconstruct(samples, states[step], masks[step])
        known = sum(int((grid.known >= 0).sum()) for grid in reconstructor._pages.values())
        return output[rows[~sampled], cols[~sampled]], known

    output, known = drawn()
    np.testing.assert_allclose(output, truth, atol=1e-6)
    assert known == 0, "samples of the balls never enter the level's memory as background"
    ignoring, _ = drawn(sprite_miss_probability=1.0)
    assert np.abs(ignoring - truth).sum(axis=1).mean() > 0.1, "without its samples: the frequent one"


def test_the_state_boxes_the_power_up_where_its_mushroom_is_drawn(tmp_path):
    """1-2 along its demonstration: the first ?-block gives a mushroom, which the state now places."""
    import tyro

    from agents import collect
    from models.tile_reconstructor import SpriteAppearances, session_backgrounds
    from sgaps_env.sprites import sprite_boxes

    path = tmp_path / "mushroom.h5"
    collect.main(tyro.cli(collect.Args, args=[
        "--output", str(path), "--no-progress", "--workers", "1", "--player", "demonstration", "--buttons", "complex",
        "--player-option", "follow_probability=1.0", "--stages", "1-2", "--episodes", "1", "--max-steps", "45",
        "--store-frames", "--seed", "777"]))
    (session,) = list_sessions([path], None)
    frames, (states, masks) = session.frames(), session.states()
    codes = colour_codes(frames)
    backgrounds = session_backgrounds(codes, states, masks)
    out = [t for t in range(len(frames)) if any(b.kind == "powerup" for b in sprite_boxes(states[t], masks[t]))]
    assert len(out) >= 5, "the mushroom is out for the last steps"
    counter = SpriteAppearances()
    for t in out:
        counter.add(codes[t], states[t], masks[t], backgrounds)
    (box,) = [b for b in sprite_boxes(states[out[-1]], masks[out[-1]]) if b.kind == "powerup"]
    mushroom = [np.frombuffer(key, np.int32) for key in counter.counts[box.pose]]
    assert max(int((appearance >= 0).sum()) for appearance in mushroom) > 150, "a whole 16x16 mushroom in its box"
