"""The session file format: lossless round trips, the index, recovery and bad files."""
import os
import subprocess
import sys

from pathlib import Path

import h5py
import numpy as np
import pytest

from agents import RunRightPlayer
from sgaps_env.rollout import Rollout
from sgaps_env.sampler import PatternSampler
from sgaps_env.session_file import (FORMAT_NAME, SPLITS, FramePalette, RecordedSession, SessionFile,
                                    SessionFileError, SessionRecorder, attrs_of, frames_rgb, list_sessions,
                                    read_sessions, session_pixels, split_of, write_shard)


def record(env, steps=40, seed=0, key="smb1-1-1", session_id="s0", pattern="random", store_ram=False):
    """One real episode (cut at ``steps``) as SessionData, plus what the env returned."""
    recorder = SessionRecorder(key, session_id, {"seed": seed, "env_config": env.config}, store_ram=store_ram)
    seen = []
    for step in Rollout(env, RunRightPlayer(), PatternSampler(pattern, env.sample_count), seed=seed, max_steps=steps):
        ram = env.frame_ram
        seen.append((step.observation, step.info, ram))
        if step.step == 0:
            recorder.add(step.observation, step.info, ram=ram if store_ram else None)
        else:
            recorder.add(step.observation, step.info, step.buttons, step.reward, step.terminated, step.truncated,
                         0.01 * step.step, ram=ram if store_ram else None)
    return recorder.finish(), seen


@pytest.mark.parametrize("color", ["gray", "rgb"])
def test_a_session_round_trips_bit_for_bit(make_env, tmp_path, color):
    env = make_env(return_frame=True, color=color, sample_count=300)
    data, seen = record(env, store_ram=True)
    session_file = SessionFile(tmp_path / "s.h5", create=True)
    session_file.add(data)
    with SessionFile(tmp_path / "s.h5").open() as index:
        group = index["smb1-1-1"]["s0"]
        assert len(group["buttons"]) == len(seen) == data.steps + 1
        np.testing.assert_array_equal(frames_rgb(group), np.stack([info["frame"] for _, info, _ in seen]))
        pixels = session_pixels(group)
        for row, (observation, info, ram) in enumerate(seen):
            np.testing.assert_array_equal(pixels[row], observation["pixels"])  # bit-exact observations
            np.testing.assert_array_equal(group["state"][row], observation["state"])
            np.testing.assert_array_equal(group["state_mask"][row], observation["state_mask"])
            np.testing.assert_array_equal(group["ram"][row], ram)
            assert group["frame_index"][row] == info["frame_index"]
        assert group["buttons"][0] == -1 and group["rewards"][0] == 0
        attrs = attrs_of(group)
        assert attrs["steps"] == data.steps and attrs["env_config"] == env.config and attrs["seed"] == 0
        assert attrs["format"] == FORMAT_NAME and attrs["resolution"] == [240, 256]


def test_the_index_reads_with_plain_h5py_from_anywhere(make_env, tmp_path):
    data, _ = record(make_env(return_frame=True), steps=10)
    SessionFile(tmp_path / "data" / "s.h5", create=True).add(data)
    code = ("import h5py, hdf5plugin, sys; f = h5py.File(sys.argv[1]); g = f['smb1-1-1']['s0']; "
            "rgb = g['palette'][:][g['frames'][3]]; print(rgb.shape, g['coords'].shape, dict(g.attrs)['steps'])")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data" / "s.h5")], cwd="/",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["(240,", "256,", "3)", f"({data.steps + 1},", "500,", "2)", str(data.steps)]


def test_sessions_are_indexed_once_and_survive_reopening(make_env, tmp_path):
    env = make_env(return_frame=True)
    session_file = SessionFile(tmp_path / "s.h5", create=True)
    for number in range(3):
        session_file.add(record(env, steps=5, session_id=f"s{number}")[0])
    with pytest.raises(ValueError, match="already in"):
        session_file.add(record(env, steps=5, session_id="s1")[0])
    reopened = SessionFile(tmp_path / "s.h5")
    assert [entry.session_id for entry in reopened.entries()] == ["s0", "s1", "s2"]
    assert ("smb1-1-1", "s2") in reopened and len(reopened) == 3


def test_recover_indexes_finished_shards_and_drops_temporaries(make_env, tmp_path):
    env = make_env(return_frame=True)
    session_file = SessionFile(tmp_path / "s.h5", create=True)
    session_file.add(record(env, steps=5, session_id="indexed")[0])
    orphan = record(env, steps=5, session_id="orphan")[0]
    write_shard(session_file.shard_path("smb1-1-1", "orphan"), orphan)  # written, then the recorder was killed
    stale = session_file.shards_dir / "smb1-1-1" / ".half.h5.abc.tmp"
    stale.write_bytes(b"partial")
    assert len(SessionFile(tmp_path / "s.h5")) == 1
    recovered = SessionFile(tmp_path / "s.h5").recover()
    assert [entry.session_id for entry in recovered] == ["orphan"]
    assert len(SessionFile(tmp_path / "s.h5")) == 2 and not stale.exists()


def test_files_that_are_not_session_files_are_refused_untouched(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("my notes")
    with pytest.raises(SessionFileError, match="not an HDF5 file"):
        SessionFile(text, create=True)
    assert text.read_text() == "my notes"

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["x"] = np.arange(3)
    before = other.read_bytes()
    with pytest.raises(SessionFileError, match="not an SGAPS session file"):
        SessionFile(other, create=True)
    assert other.read_bytes() == before

    newer = tmp_path / "newer.h5"
    with h5py.File(newer, "w") as handle:
        handle.attrs["format"], handle.attrs["format_version"] = FORMAT_NAME, 99
    with pytest.raises(SessionFileError, match="format version 99"):
        SessionFile(newer, create=True)


def test_a_corrupt_index_is_reported_and_left_alone(make_env, tmp_path):
    session_file = SessionFile(tmp_path / "s.h5", create=True)
    session_file.add(record(make_env(return_frame=True), steps=5)[0])
    blob = (tmp_path / "s.h5").read_bytes()
    (tmp_path / "s.h5").write_bytes(blob[: len(blob) // 2])  # truncated by a crash of some other program
    with pytest.raises(SessionFileError, match="corrupt|not an HDF5"):
        SessionFile(tmp_path / "s.h5", create=True)
    assert (tmp_path / "s.h5").read_bytes() == blob[: len(blob) // 2]


def test_unwritable_or_missing_paths_are_explained(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SessionFileError, match="choose a writable output path"):
        SessionFile(blocker / "sub" / "s.h5", create=True)
    with pytest.raises(SessionFileError, match="does not exist"):
        SessionFile(tmp_path / "missing.h5")
    with pytest.raises(SessionFileError, match="is a folder"):
        SessionFile(tmp_path, create=True)


def test_names_become_paths_so_they_are_checked(tmp_path):
    with pytest.raises(ValueError, match="may only contain"):
        SessionRecorder("smb1/../../etc", "s", {})


def test_palette_encoding_is_lossless_and_bounded(rng):
    colors = rng.integers(0, 256, size=(40, 3), dtype=np.uint8)
    frame = colors[rng.integers(0, 40, size=(240, 256))]
    palette = FramePalette()
    indices = palette.encode(frame)
    np.testing.assert_array_equal(palette.array()[indices], frame)
    too_many = rng.integers(0, 256, size=(240, 256, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="more than 255 distinct colours"):
        palette.encode(too_many)


def test_frames_need_the_env_to_return_them(make_env):
    env = make_env()
    observation, info = env.reset(seed=0)
    recorder = SessionRecorder("k", "s", {})
    with pytest.raises(ValueError, match="return_frame=True"):
        recorder.add(observation, info)


def test_storage_per_step_stays_small(make_env, tmp_path):
    """Frames, random coordinates and values included: well under the 2.5 KB/step target."""
    data, _ = record(make_env(return_frame=True), steps=80)
    session_file = SessionFile(tmp_path / "s.h5", create=True)
    session_file.add(data)
    size = os.path.getsize(session_file.shard_path("smb1-1-1", "s0"))
    assert size / (data.steps + 1) < 2500


def test_the_docs_plain_h5py_example_runs_on_a_recorded_file(make_env, tmp_path):
    """The example in docs/session_format.md, run verbatim against a real session file."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "session_format.md").read_text()
    example = re.search(r"## Reading it with plain h5py\n\n```python\n(.*?)```", text, re.S).group(1)
    data_dir = tmp_path / "data"
    SessionFile(data_dir / "sessions.h5", create=True).add(record(make_env(return_frame=True), steps=20)[0])
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "smb1-1-1 s0" in result.stdout and "(21, 240, 256, 3) (21, 500, 1)" in result.stdout


# --- the one reader ------------------------------------------------------------------------------------


def test_the_reader_returns_what_the_env_showed_for_every_session(make_env, tmp_path):
    env = make_env(return_frame=True, color="gray", sample_count=200)
    recorded = {}
    session_file = SessionFile(tmp_path / "s.h5", create=True)
    for number in range(3):
        data, seen = record(env, steps=12, seed=number, session_id=f"s{number}")
        session_file.add(data)
        recorded[f"s{number}"] = seen
    sessions = list_sessions(tmp_path / "s.h5")
    assert [session.name for session in sessions] == ["smb1-1-1/s0", "smb1-1-1/s1", "smb1-1-1/s2"]
    for session in sessions:
        seen = recorded[session.session_id]
        assert len(session) == len(seen) and session.has_frames
        truth = np.stack([info["frame"] for _, info, _ in seen])
        np.testing.assert_array_equal(session.frames(), truth)
        np.testing.assert_array_equal(session.frames(slice(2, 5)), truth[2:5])
        indices, palette = session.frame_indices(slice(0, 3))
        np.testing.assert_array_equal(palette[indices], truth[:3])
        state, mask = session.states()
        np.testing.assert_array_equal(state, np.stack([observation["state"] for observation, _, _ in seen]))
        np.testing.assert_array_equal(mask, np.stack([observation["state_mask"] for observation, _, _ in seen]))
        np.testing.assert_array_equal(session.pixels(), np.stack([observation["pixels"] for observation, _, _ in seen]))
        # gray values read back from the stored frames are exactly what the env sampled
        values = session.frame_values(slice(None), "gray")
        assert values.dtype == np.float32 and values.shape == truth.shape[:3] + (1,)
        pixels = session.pixels()
        cols = (pixels[..., 0] * 256).astype(int)
        rows = (pixels[..., 1] * 240).astype(int)
        sampled = np.take_along_axis(values[..., 0].reshape(len(values), -1), rows * 256 + cols, axis=1)
        np.testing.assert_allclose(sampled, pixels[..., 2], atol=1e-6)
        assert session.buttons()[0] == -1 and session.attrs()["seed"] == int(session.session_id[1:])
    assert [session.name for session in read_sessions(tmp_path / "s.h5", max_sessions=2)] == [
        "smb1-1-1/s0", "smb1-1-1/s1"]


def test_splits_partition_the_sessions_by_name_alone(make_env, tmp_path):
    env = make_env(return_frame=True)
    session_file = SessionFile(tmp_path / "s.h5", create=True)
    for number in range(12):
        session_file.add(record(env, steps=2, session_id=f"id{number}")[0])
    by_split = {split: {session.session_id for session in list_sessions(tmp_path / "s.h5", split)} for split in SPLITS}
    every = {session.session_id for session in list_sessions(tmp_path / "s.h5")}
    assert set().union(*by_split.values()) == every and sum(map(len, by_split.values())) == len(every) == 12
    for split, ids in by_split.items():
        assert all(split_of("smb1-1-1", session_id) == split for session_id in ids)
    # a different split seed moves some sessions: the seed is part of the assignment
    moved = {session.session_id for session in list_sessions(tmp_path / "s.h5", "train", split_seed=1)}
    assert moved != by_split["train"] or len(every) < 4
    with pytest.raises(ValueError, match="unknown split 'training'"):
        list_sessions(tmp_path / "s.h5", "training")


def test_sessions_without_frames_are_named_when_frames_are_needed(make_env, tmp_path):
    env = make_env()  # no return_frame: recorded without the true frames
    recorder = SessionRecorder("smb1-1-1", "blind", {}, store_frames=False)
    observation, info = env.reset(seed=0)
    recorder.add(observation, info)
    SessionFile(tmp_path / "s.h5", create=True).add(recorder.finish())
    session = list_sessions(tmp_path / "s.h5")[0]
    assert not session.has_frames and len(session) == 1
    with pytest.raises(ValueError, match="blind.*without the true frames"):
        session.frames()
    with pytest.raises(ValueError, match="no true frames"):
        list_sessions(tmp_path / "s.h5", need_frames=True)


def test_session_seeds_are_stable_and_distinct():
    first = RecordedSession(Path("a.h5"), "smb1-1-1", "s0")
    assert first.seed(0, 500) == RecordedSession(Path("elsewhere.h5"), "smb1-1-1", "s0").seed(0, 500)
    assert len({first.seed(0, 500), first.seed(1, 500), first.seed(0, 250),
                RecordedSession(Path("a.h5"), "smb1-1-1", "s1").seed(0, 500)}) == 4
