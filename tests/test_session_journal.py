"""Sessions recorded frame by frame: the journal becomes an ordinary shard, survives crashes and bad bytes,
and many sessions close into one index at once; shards carry a server's reconstructions."""
import shutil
import signal
import struct
import subprocess
import sys
import threading
import warnings
import zlib

import gymnasium
import msgpack
import numpy as np
import pytest

import sgaps_env  # registers SGAPS-SMB-v0 with gymnasium
import sgaps_env.session_file as session_file_module
from sgaps_env.coords import frame_values
from sgaps_env.session_file import RecordedSession, SessionFile, list_sessions, shard_file, write_shard
from sgaps_env.session_journal import (MAGIC, JournalError, JournalWarning, SessionJournal, journal_path,
                                       read_journal, recover_journal, recover_journals)

KEY = "smb1-1-1"
COUNT, CHANNELS, DIM = 40, 3, 64
HEIGHT, WIDTH = 240, 256


def fabricated_rows(count=8, seed=0, frames=True, reconstruct_every=3):
    """``count`` rows of random but valid frames: what a client would stream."""
    rng = np.random.default_rng(seed)
    rows = []
    for row in range(count):
        coords = np.stack([rng.integers(0, WIDTH, COUNT), rng.integers(0, HEIGHT, COUNT)], axis=1).astype(np.uint8)
        state = rng.normal(size=DIM).astype(np.float32)
        mask = (rng.random(DIM) < 0.8).astype(np.float32)
        frame = rng.integers(0, 4, (HEIGHT, WIDTH, 3), dtype=np.uint8) * 60 if frames else None  # 64 colours
        reconstruction = (rng.random((HEIGHT, WIDTH, CHANNELS), dtype=np.float32)
                          if reconstruct_every and row % reconstruct_every == 0 else None)
        rows.append(dict(coords_xy=coords, values=rng.random((COUNT, CHANNELS), dtype=np.float32), state=state,
                         state_mask=mask, timestamp_s=1000.0 + row / 30, frame=frame, reconstruction=reconstruction))
    return rows


def open_journal(index, session_id="s0", **kwargs):
    return SessionJournal(index, KEY, session_id, {"client": "test", "color": "rgb"}, COUNT, CHANNELS, DIM, **kwargs)


def write_journal(index, rows, session_id="s0"):
    journal = open_journal(index, session_id)
    for row in rows:
        journal.append(**row)
    return journal


def assert_session_holds(session, rows):
    """The stored session equals the rows that were appended, array for array."""
    assert len(session) == len(rows)
    with session.group() as group:
        np.testing.assert_array_equal(group["coords"][:], np.stack([row["coords_xy"] for row in rows]))
        np.testing.assert_array_equal(group["values"][:], np.stack([row["values"] for row in rows]))
        np.testing.assert_array_equal(group["timestamps"][:], [row["timestamp_s"] for row in rows])
    state, mask = session.states()
    np.testing.assert_array_equal(state, np.stack([row["state"] for row in rows]))
    np.testing.assert_array_equal(mask, np.stack([row["state_mask"] for row in rows]))
    steps, images = session.reconstructions()
    expected = [index for index, row in enumerate(rows) if row["reconstruction"] is not None]
    np.testing.assert_array_equal(steps, expected)
    for step, image in zip(steps, images):
        np.testing.assert_array_equal(image, np.rint(rows[step]["reconstruction"] * 255).astype(np.uint8))


def journal_records(path):
    """``(offset, length)`` of each record of a journal file, the header first."""
    blob = path.read_bytes()
    offset, records = len(MAGIC), []
    while offset + 8 <= len(blob):
        length, _ = struct.unpack_from("<II", blob, offset)
        records.append((offset, 8 + length))
        offset += 8 + length
    return records


def leftover_copy(journal, index):
    """What a crash leaves: the journal's flushed bytes, beside another index, with no writer."""
    target = journal_path(index, KEY, journal.header.session_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(journal.path, target)
    return target


# --- journal -> shard ---------------------------------------------------------------------------------------


def test_a_closed_journal_is_an_ordinary_session_with_everything_appended(tmp_path):
    index = tmp_path / "server.h5"
    rows = fabricated_rows(10)
    journal = write_journal(index, rows)
    assert len(journal) == 10 and journal.path == index.parent / "server.h5.shards" / KEY / "s0.journal"
    entry = journal.close(truncated=True, disconnect="client closed")
    assert not journal.path.exists() and list((index.parent / "server.h5.shards" / KEY).iterdir()) == [
        shard_file(index, KEY, "s0")], "the journal and every temporary are gone"
    assert entry.session_id == "s0"
    assert [(session.checkpoint_key, session.session_id) for session in list_sessions(index)] == [(KEY, "s0")]
    session = RecordedSession(index, KEY, "s0")
    assert_session_holds(session, rows)
    np.testing.assert_array_equal(session.frames(), np.stack([row["frame"] for row in rows]))
    np.testing.assert_array_equal(session.buttons(), np.full(10, -1))
    with session.group() as group:
        np.testing.assert_array_equal(group["rewards"][:], 0)
        np.testing.assert_array_equal(group["frame_index"][:], -1)
        assert not group["terminated"][:].any()
        np.testing.assert_array_equal(group["truncated"][:], [False] * 9 + [True])
    attrs = session.attrs()
    assert attrs["client"] == "test" and attrs["disconnect"] == "client closed" and attrs["steps"] == 9
    assert attrs["recovered"] is False
    assert attrs["rows_with_frames"] == 10 and attrs["resolution"] == [HEIGHT, WIDTH] and "frames_left_out" not in attrs


def test_a_real_emulator_session_round_trips_bit_for_bit(tmp_path):
    env = gymnasium.make("SGAPS-SMB-v0", stage="1-1", sample_count=100, color="rgb", return_frame=True)
    try:
        journal = SessionJournal(tmp_path / "server.h5", KEY, "emulated", {"seed": 3}, 100, 3, 64, flush_every=4)
        env.action_space.seed(3)
        observation, info = env.reset(seed=3)
        seen = []
        for step in range(30):
            if step:
                observation, _, _, _, info = env.step(env.action_space.sample())
            reconstruction = frame_values(info["frame"], "rgb") if step % 7 == 0 else None
            journal.append_observation(observation, step / 60, frame=info["frame"], reconstruction=reconstruction)
            seen.append((observation, info["frame"]))
        journal.close()
    finally:
        env.close()
    session = RecordedSession(tmp_path / "server.h5", KEY, "emulated")
    np.testing.assert_array_equal(session.pixels(), np.stack([observation["pixels"] for observation, _ in seen]))
    np.testing.assert_array_equal(session.states()[0], np.stack([observation["state"] for observation, _ in seen]))
    np.testing.assert_array_equal(session.frames(), np.stack([frame for _, frame in seen]))
    steps, images = session.reconstructions()
    np.testing.assert_array_equal(steps, [0, 7, 14, 21, 28])
    np.testing.assert_array_equal(images, np.stack([seen[step][1] for step in steps]))  # rgb / 255 * 255 is exact


def test_frames_are_stored_only_when_every_row_has_one(tmp_path):
    rows = fabricated_rows(6)
    for row in rows[2:4]:
        row["frame"] = None  # the client stopped sending its truth for a while
    write_journal(tmp_path / "s.h5", rows).close()
    session = RecordedSession(tmp_path / "s.h5", KEY, "s0")
    assert not session.has_frames
    attrs = session.attrs()
    assert attrs["rows_with_frames"] == 4 and "only 4 of 6 rows" in attrs["frames_left_out"]
    assert_session_holds(session, rows)

    write_journal(tmp_path / "s.h5", fabricated_rows(3, frames=False, reconstruct_every=0), "bare").close()
    bare = RecordedSession(tmp_path / "s.h5", KEY, "bare")
    assert not bare.has_frames and bare.attrs()["rows_with_frames"] == 0 and "frames_left_out" not in bare.attrs()
    steps, images = bare.reconstructions()
    assert steps.shape == (0,) and images.shape == (0, HEIGHT, WIDTH, CHANNELS) and images.dtype == np.uint8


def test_frames_that_are_no_nes_frames_are_left_out_and_said_so(tmp_path):
    rows = fabricated_rows(2)
    rows[1]["frame"] = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)  # 60k colours
    write_journal(tmp_path / "s.h5", rows).close()
    session = RecordedSession(tmp_path / "s.h5", KEY, "s0")
    assert not session.has_frames and "more than 255 distinct colours" in session.attrs()["frames_left_out"]
    assert_session_holds(session, rows)


def test_session_attributes_must_be_storable(tmp_path):
    with pytest.raises(ValueError, match="JSON serializable"):
        SessionJournal(tmp_path / "s.h5", KEY, "s0", {"model": object()}, COUNT, CHANNELS, DIM)
    with pytest.raises(ValueError, match="keep large data out of the attributes"):
        SessionJournal(tmp_path / "s.h5", KEY, "s0", {"blob": "x" * (2 << 20)}, COUNT, CHANNELS, DIM)
    with pytest.raises(ValueError, match="channels must be 1 .* or 3"):
        SessionJournal(tmp_path / "s.h5", KEY, "s0", {}, COUNT, 2, DIM)
    with pytest.raises(ValueError, match="may only contain"):
        SessionJournal(tmp_path / "s.h5", KEY, "../s0", {}, COUNT, CHANNELS, DIM)
    assert not journal_path(tmp_path / "s.h5", KEY, "s0").exists()


def test_rows_reach_the_file_every_flush_every_rows(tmp_path):
    rows = fabricated_rows(4, frames=False, reconstruct_every=0)  # about 1 KB a row: they wait in the buffer
    journal = open_journal(tmp_path / "s.h5", flush_every=3)
    sizes = [journal.path.stat().st_size]
    for row in rows:
        journal.append(**row)
        sizes.append(journal.path.stat().st_size)
    assert sizes[0] == sizes[1] == sizes[2] < sizes[3] == sizes[4], "flushed with the 3rd row, not before"
    assert len(journal_records(journal.path)) == 1 + 3
    journal.flush()
    assert len(journal_records(journal.path)) == 1 + 4
    journal.close()


def test_a_journal_without_rows_records_nothing(tmp_path):
    journal = open_journal(tmp_path / "s.h5")
    assert journal.path.exists()
    assert journal.close() is None
    assert not journal.path.exists() and len(SessionFile(tmp_path / "s.h5")) == 0


def test_bad_rows_are_refused_before_anything_is_written(tmp_path):
    rows = fabricated_rows(3)
    journal = write_journal(tmp_path / "s.h5", rows[:2])
    size = journal.path.stat().st_size
    bad = [dict(coords_xy=rows[2]["coords_xy"].astype(np.float32)), dict(values=rows[2]["values"][:5]),
           dict(state=np.zeros(DIM + 1, np.float32)), dict(frame=rows[2]["frame"].astype(np.float32)),
           dict(reconstruction=np.full((HEIGHT, WIDTH, CHANNELS), np.nan, np.float32)),
           dict(reconstruction=np.zeros((HEIGHT, WIDTH, 1), np.float32)), dict(timestamp_s=float("inf")),
           dict(coords_xy=np.full((COUNT, 2), 250, np.uint8))]  # y = 250 lies below a 240-row frame
    for change in bad:
        with pytest.raises(ValueError, match="must|NaN"):
            journal.append(**{**rows[2], **change})
    assert journal.path.stat().st_size == size and len(journal) == 2
    journal.append(**rows[2])
    journal.close()
    assert_session_holds(RecordedSession(tmp_path / "s.h5", KEY, "s0"), rows)
    with pytest.raises(ValueError, match="closed"):
        journal.append(**rows[0])


def test_a_session_is_never_recorded_twice(tmp_path):
    index = tmp_path / "s.h5"
    journal = open_journal(index)
    with pytest.raises(ValueError, match="already being recorded"):
        open_journal(index)
    journal.append(**fabricated_rows(1)[0])
    journal.close()
    with pytest.raises(ValueError, match="already recorded"):
        open_journal(index)
    leftover = journal_path(index, KEY, "left")
    leftover.write_bytes(b"")
    with pytest.raises(ValueError, match="recover_journals"):
        open_journal(index, "left")
    assert leftover.read_bytes() == b"", "an existing journal is never overwritten"


# --- crashes ---------------------------------------------------------------------------------------------------

_CRASHING_WRITER = """
import os, signal, sys
import numpy as np
from sgaps_env.session_journal import SessionJournal
journal = SessionJournal(sys.argv[1], "smb1-1-1", "killed", {"client": "test"}, 40, 3, 64)
rng = np.random.default_rng(0)
for row in range(int(sys.argv[2])):
    journal.append(rng.integers(0, 240, (40, 2)), rng.random((40, 3), dtype=np.float32), np.full(64, row, np.float32),
                   np.ones(64, np.float32), row / 30)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_server_loses_no_flushed_row(tmp_path):
    index = tmp_path / "s.h5"
    result = subprocess.run([sys.executable, "-c", _CRASHING_WRITER, str(index), "25"], capture_output=True,
                            timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    assert len(SessionFile(index)) == 0 and journal_path(index, KEY, "killed").exists()
    entries = recover_journals(index)
    assert [entry.session_id for entry in entries] == ["killed"]
    session = RecordedSession(index, KEY, "killed")
    assert len(session) == 25 and session.states()[0][:, 0].tolist() == list(range(25))
    assert session.attrs()["recovered"] and session.attrs()["journal_dropped_bytes"] == 0
    assert not journal_path(index, KEY, "killed").exists()
    assert recover_journals(index) == [] and len(SessionFile(index)) == 1, "recovering again changes nothing"


@pytest.mark.parametrize("cut", ["in the length", "in the payload", "one byte short"])
def test_a_torn_last_record_is_dropped_and_every_complete_one_kept(tmp_path, cut):
    rows = fabricated_rows(6)
    journal = write_journal(tmp_path / "live.h5", rows)
    index = tmp_path / "crashed.h5"
    path = leftover_copy(journal, index)
    journal.close()
    offset, length = journal_records(path)[-1]
    keep = {"in the length": offset + 3, "in the payload": offset + length // 2, "one byte short": offset + length - 1}
    blob = path.read_bytes()
    path.write_bytes(blob[:keep[cut]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn record is what a crash leaves: no warning
        entries = recover_journals(index)
    assert [entry.session_id for entry in entries] == ["s0"] and not path.exists()
    session = RecordedSession(index, KEY, "s0")
    assert_session_holds(session, rows[:5])
    assert session.attrs()["recovered"] and session.attrs()["journal_dropped_bytes"] == keep[cut] - offset


def test_a_damaged_record_ends_the_session_there_with_a_warning(tmp_path):
    rows = fabricated_rows(6)
    journal = write_journal(tmp_path / "live.h5", rows)
    for damage in ("flipped byte", "huge length", "wrong array size"):
        index = tmp_path / damage.replace(" ", "_") / "s.h5"
        path = leftover_copy(journal, index)
        blob = bytearray(path.read_bytes())
        offset, length = journal_records(path)[4]  # row 3
        if damage == "flipped byte":
            blob[offset + length // 2] ^= 0xFF
        elif damage == "huge length":
            struct.pack_into("<I", blob, offset, 0xFFFFFFF0)  # never allocated: refused against the header's sizes
        else:
            fields = msgpack.unpackb(bytes(blob[offset + 8: offset + length]))
            fields["v"] = fields["v"][:-4]
            payload = msgpack.packb(fields)
            blob[offset:] = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
        path.write_bytes(bytes(blob))
        with pytest.warns(JournalWarning, match="row 3 .*(CRC|claims|'v' holds).*keeps its 3 rows"):
            entries = recover_journals(index)
        assert len(entries) == 1
        assert_session_holds(RecordedSession(index, KEY, "s0"), rows[:3])
    journal.close()


@pytest.mark.parametrize("damage", ["not a journal", "flipped header byte", "huge header", "bad sizes",
                                    "another session", "empty"])
def test_a_damaged_header_is_refused_and_nothing_is_touched(tmp_path, damage):
    rows = fabricated_rows(3)
    journal = write_journal(tmp_path / "live.h5", rows)
    index = tmp_path / "s.h5"
    SessionFile(index, create=True)
    index_bytes = index.read_bytes()
    path = leftover_copy(journal, index)
    journal.close()
    blob = bytearray(path.read_bytes())
    offset, length = journal_records(path)[0]
    header = msgpack.unpackb(bytes(blob[offset + 8: offset + length]))
    if damage == "not a journal":
        blob[:4] = b"\x89HDF"
    elif damage == "flipped header byte":
        blob[offset + 20] ^= 0x01
    elif damage == "huge header":
        struct.pack_into("<I", blob, offset, 1 << 31)
    elif damage == "empty":
        blob = bytearray()
    else:
        header.update({"sample_count": 10 ** 9} if damage == "bad sizes" else {"session_id": "someone-else"})
        payload = msgpack.packb(header)
        blob[offset:offset + length] = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    path.write_bytes(bytes(blob))
    expected = {"not a journal": "does not begin with", "flipped header byte": "CRC", "huge header": "claims",
                "bad sizes": "sample_count must be", "another session": "names session", "empty": "does not begin"}
    with pytest.raises(JournalError, match=f"{path}.*{expected[damage]}.*Nothing was changed"):
        read_journal(path)
    with pytest.warns(JournalWarning, match=expected[damage]):
        assert recover_journals(index) == []
    assert path.read_bytes() == bytes(blob) and index.read_bytes() == index_bytes


def test_recovery_finishes_a_conversion_that_a_crash_interrupted(tmp_path):
    rows = fabricated_rows(4)
    journal = write_journal(tmp_path / "live.h5", rows)
    after_shard, after_index = tmp_path / "after_shard" / "s.h5", tmp_path / "after_index" / "s.h5"
    for index in (after_shard, after_index):
        leftover_copy(journal, index)
    journal.close()
    data = read_journal(journal_path(after_shard, KEY, "s0"))
    write_shard(shard_file(after_shard, KEY, "s0"), data)  # killed before indexing
    stamp = shard_file(after_shard, KEY, "s0").stat().st_mtime_ns
    # killed after indexing, before deleting the journal:
    SessionFile(after_index, create=True).add(read_journal(journal_path(after_index, KEY, "s0")))
    index_bytes = after_index.read_bytes()

    assert [entry.session_id for entry in recover_journals(after_shard)] == ["s0"]
    assert shard_file(after_shard, KEY, "s0").stat().st_mtime_ns == stamp, "indexed, not written again"
    assert recover_journals(after_index) == [] and after_index.read_bytes() == index_bytes
    for index in (after_shard, after_index):
        assert not journal_path(index, KEY, "s0").exists()
        assert_session_holds(RecordedSession(index, KEY, "s0"), rows)


def test_a_journal_still_written_is_not_recovered(tmp_path):
    index = tmp_path / "s.h5"
    rows = fabricated_rows(3)
    journal = write_journal(index, rows[:2])
    assert recover_journals(index) == [] and recover_journal(index, journal.path) is None
    journal.append(**rows[2])
    journal.close()
    assert_session_holds(RecordedSession(index, KEY, "s0"), rows)


# --- many sessions at once ----------------------------------------------------------------------------------------


def test_sessions_closing_at_the_same_moment_are_all_indexed(tmp_path, monkeypatch):
    index = tmp_path / "s.h5"
    both_written = threading.Barrier(2, timeout=30)
    original = session_file_module.write_shard

    def write_then_wait(path, data):  # both threads have read the index and written their shard: now both index
        original(path, data)
        both_written.wait()

    monkeypatch.setattr(session_file_module, "write_shard", write_then_wait)
    rows = {name: fabricated_rows(4, seed=number) for number, name in enumerate(["a", "b"])}
    journals = {name: write_journal(index, rows[name], name) for name in rows}
    errors = []

    def close(name):
        try:
            journals[name].close()
        except BaseException as error:  # reported below, with the thread's name
            errors.append((name, error))

    threads = [threading.Thread(target=close, args=(name,)) for name in journals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert [entry.session_id for entry in SessionFile(index).entries()] == ["a", "b"]
    for name in rows:
        assert_session_holds(RecordedSession(index, KEY, name), rows[name])


def test_many_threads_record_into_one_index(tmp_path):
    index = tmp_path / "s.h5"
    names = [f"client{number}" for number in range(8)]
    rows = fabricated_rows(5, frames=False, reconstruct_every=2)
    errors = []

    def record(name):
        try:
            journal = open_journal(index, name)
            for row in rows:
                journal.append(**row)
            journal.close()
        except BaseException as error:
            errors.append((name, error))

    threads = [threading.Thread(target=record, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert [entry.session_id for entry in SessionFile(index).entries()] == sorted(names)


def test_two_handles_of_one_index_keep_each_others_sessions(tmp_path):
    index = tmp_path / "s.h5"
    sessions = {name: read_journal_data(tmp_path, name) for name in "abc"}
    first, second = SessionFile(index, create=True), SessionFile(index)
    for handle, name in ((first, "a"), (second, "b"), (first, "c")):
        handle.add(sessions[name])
    assert [entry.session_id for entry in SessionFile(index).entries()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="already in"):
        second.add(sessions["c"])  # second read the index before c was added


def read_journal_data(tmp_path, name):
    journal = write_journal(tmp_path / f"source-{name}.h5", fabricated_rows(2, reconstruct_every=0), name)
    data = read_journal(journal.path)
    journal.close()
    return data


# --- reconstructions in SessionData --------------------------------------------------------------------------------


def test_shards_keep_reconstructions_and_check_them(tmp_path):
    data = read_journal_data(tmp_path, "s0")
    images = np.random.default_rng(0).integers(0, 256, (2, HEIGHT, WIDTH, CHANNELS), dtype=np.uint8)
    data.reconstructions, data.reconstruction_steps = images, np.array([0, 1])
    SessionFile(tmp_path / "s.h5", create=True).add(data)
    steps, stored = RecordedSession(tmp_path / "s.h5", KEY, "s0").reconstructions()
    assert steps.dtype == np.int64 and steps.tolist() == [0, 1]
    np.testing.assert_array_equal(stored, images)
    for steps, reconstructions, match in ((np.array([0, 2]), images, "ascending rows in \\[0, 2\\)"),
                                          (np.array([1, 0]), images, "ascending"),
                                          (np.array([0]), images, "one row per reconstruction"),
                                          (None, images, "give both or neither"),
                                          (np.array([0, 1]), images.astype(np.float32), "uint8")):
        data.reconstructions, data.reconstruction_steps = reconstructions, steps
        with pytest.raises(ValueError, match=match):
            write_shard(tmp_path / "bad.h5", data)
        assert not (tmp_path / "bad.h5").exists()

