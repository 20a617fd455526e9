"""agents/collect.py: recording, resuming, parallel workers, kills, bad input; and replaying sessions."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tyro

from agents import collect
from agents.replay import ReplayPlayer, replay_session
from sgaps_env.session_file import RecordedSession, SessionFile, list_sessions, shards_dir_for

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "agents" / "collect.py")


def run_collect(output, *extra):
    args = tyro.cli(collect.Args, args=["--output", str(output), "--no-progress", "--max-steps", "30", *extra])
    return collect.main(args)


def session_ids(path):
    return [(session.checkpoint_key, session.session_id) for session in list_sessions(path)]


def steps_by_key(path, attribute="checkpoint_key"):
    """Recorded steps per checkpoint key (or per another session attribute, e.g. the stage)."""
    steps = {}
    for session in list_sessions(path):
        attrs = session.attrs()
        key = session.checkpoint_key if attribute == "checkpoint_key" else attrs[attribute]
        steps[key] = steps.get(key, 0) + int(attrs["steps"])
    return steps


def test_collect_records_resumes_and_appends(tmp_path):
    output = tmp_path / "s.h5"
    first = run_collect(output, "--episodes", "2")
    assert first["recorded_sessions"] == 2 and first["skipped_sessions"] == 0
    ids = session_ids(output)
    assert [key for key, _ in ids] == ["smb1-1-1"] * 2
    assert ids[0][1].startswith("run_right-random-") and ids[0][1].endswith("-ep00000")

    again = run_collect(output, "--episodes", "2")  # same command: nothing new
    assert again["recorded_sessions"] == 0 and again["skipped_sessions"] == 2
    more = run_collect(output, "--episodes", "3")  # one more episode appended
    assert more["recorded_sessions"] == 1 and session_ids(output)[:2] == ids
    other_seed = run_collect(output, "--episodes", "1", "--seed", "7")  # another configuration: new ids
    assert other_seed["recorded_sessions"] == 1 and len(session_ids(output)) == 4

    seeds = {session.attrs()["seed"] for session in list_sessions(output)}
    first = RecordedSession(output, *ids[0])
    attrs = first.attrs()
    assert attrs["player"] == "run_right" and attrs["pattern"] == "random" and attrs["episode"] == 0
    assert attrs["steps"] == len(first.buttons()) - 1 <= 30
    assert attrs["truncated"] or attrs["terminated"]
    assert len(seeds) == 4, "every episode has its own seed"


def test_frames_budget_records_until_each_stage_has_enough_steps(tmp_path):
    output = tmp_path / "s.h5"
    result = run_collect(output, "--frames", "70", "--stages", "1-1", "4-1")
    steps = steps_by_key(output)
    assert set(steps) == {"smb1-1-1", "smb1-4-1"}
    assert all(70 <= value < 70 + 31 for value in steps.values()), steps
    assert result["recorded_steps"] >= 140


def test_two_workers_record_the_same_sessions_as_one(tmp_path):
    one = run_collect(tmp_path / "one.h5", "--episodes", "2", "--stages", "1-1", "1-2")
    two = run_collect(tmp_path / "two.h5", "--episodes", "2", "--stages", "1-1", "1-2", "--workers", "2")
    # the time workers spend in episodes (what benchmark_collect.py splits the 2-worker ratio with)
    assert 0 < one["worker_seconds"] <= one["seconds"]
    assert 0 < two["worker_seconds"] <= 2 * two["seconds"]
    assert session_ids(tmp_path / "one.h5") == session_ids(tmp_path / "two.h5")
    assert {key for key, _ in session_ids(tmp_path / "two.h5")} == {"smb1-1-1", "smb1-1-2"}
    for key, sid in session_ids(tmp_path / "one.h5"):
        with RecordedSession(tmp_path / "one.h5", key, sid).group() as one, \
                RecordedSession(tmp_path / "two.h5", key, sid).group() as two:
            for name in ("frames", "coords", "values", "state", "buttons", "rewards"):
                np.testing.assert_array_equal(one[name][:], two[name][:])


def test_replay_reproduces_the_recorded_frames_bit_exactly(tmp_path):
    output = tmp_path / "s.h5"
    run_collect(output, "--episodes", "1", "--player", "random", "--sticky", "0.25", "--max-steps", "60")
    (key, sid), = session_ids(output)
    session = RecordedSession(output, key, sid)
    frames, pixels, (states, _) = session.frames(), session.pixels(), session.states()
    buttons = session.buttons()[1:]
    replayed = list(replay_session(output, key, sid))
    assert len(replayed) == len(frames)
    for row, (observation, info) in enumerate(replayed):
        np.testing.assert_array_equal(info["frame"], frames[row])
        np.testing.assert_array_equal(observation["pixels"], pixels[row])
        np.testing.assert_array_equal(observation["state"], states[row])
    player = ReplayPlayer(output, key, sid)
    assert [player.act(None, None) for _ in buttons] == buttons.tolist()
    with pytest.raises(IndexError, match="only"):
        player.act(None, None)


def indexed_count(path):
    return len(SessionFile(path)) if path.exists() else 0


def wait_until(condition, timeout=120.0):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for the recorder")
        time.sleep(0.05)


def test_sigkill_at_any_moment_leaves_a_readable_file_and_a_rerun_resumes(tmp_path):
    output = tmp_path / "s.h5"
    command = [sys.executable, SCRIPT, "--output", str(output), "--episodes", "12", "--max-steps", "40",
               "--stages", "1-1", "1-2", "--workers", "2", "--no-progress"]
    # kill during start-up, then twice mid-run once more sessions have been indexed (whatever the machine's load)
    moments = [lambda: time.sleep(0.3), lambda: wait_until(lambda: indexed_count(output) >= 2),
               lambda: wait_until(lambda: indexed_count(output) >= counts[-1] + 3)]
    counts = []
    for moment in moments:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        moment()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        if output.exists():  # opens, and every indexed session is complete
            for session in list_sessions(output):
                attrs = session.attrs()
                assert attrs["complete"] and len(session.frame_indices()[0]) == attrs["steps"] + 1
                session.frames(-1)
        counts.append(indexed_count(output))
    assert 0 < counts[-1] < 24, f"the kills should land mid-run: indexed after each {counts}"
    time.sleep(0.5)  # the killed recorder's workers die with it
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    ids = session_ids(output)
    assert len(ids) == len(set(ids)) == 24
    assert not list((tmp_path / "s.h5.shards").glob("*/.*.tmp"))


def test_ctrl_c_stops_cleanly_and_keeps_finished_sessions(tmp_path):
    output = tmp_path / "s.h5"
    process = subprocess.Popen([sys.executable, SCRIPT, "--output", str(output), "--episodes", "200",
                                "--max-steps", "40", "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    # wait for two finished sessions: their shards (written whole, then renamed) appear before the index is
    # read back, and on a loaded machine the recorder may take a minute to start
    deadline = time.time() + 180
    while time.time() < deadline and len(list(shards_dir_for(output).glob("*/*.h5"))) < 2:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "stopped by Ctrl-C" in stdout and "rerun the same command to resume" in stdout
    indexed = list_sessions(output)
    assert 2 <= len(indexed) < 200
    assert all(session.attrs()["complete"] for session in indexed)


@pytest.mark.parametrize("arguments, message", [
    (["--stages", "9-9"], "unknown stage"),
    (["--episodes", "0"], "--episodes must be at least 1"),
    (["--sticky", "1.5"], "--sticky must be in"),
    (["--player-option", "oops"], "KEY=VALUE"),
    (["--player-option", "nonsense=1"], "unexpected keyword|nonsense"),
    (["--checkpoint-key", "../up"], "may only contain"),
])
def test_bad_arguments_are_explained(tmp_path, arguments, message):
    with pytest.raises((ValueError, TypeError), match=message):
        run_collect(tmp_path / "s.h5", *arguments)


def test_the_script_refuses_bad_files_and_players_without_touching_anything(tmp_path):
    notes = tmp_path / "notes.h5"
    notes.write_text("precious")
    result = subprocess.run([sys.executable, SCRIPT, "--output", str(notes), "--no-progress"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not an HDF5 file" in result.stderr
    assert notes.read_text() == "precious"
    result = subprocess.run([sys.executable, SCRIPT, "--player", "nobody"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "invalid choice 'nobody'" in result.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run([sys.executable, SCRIPT, "--output", str(blocker / "s.h5"), "--no-progress"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "writable output path" in result.stderr


def test_a_second_recorder_on_the_same_file_is_refused(tmp_path):
    output = tmp_path / "s.h5"
    SessionFile(output, create=True)
    import fcntl

    with open(output.with_name("s.h5.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(Exception, match="another collect.py is writing"):
            run_collect(output, "--episodes", "1")


def test_whole_stage_list_and_game_mode_expand():
    assert len(collect.expand_stages(["all"])) == 32
    assert collect.expand_stages(["1-1", "game", "1-1"]) == ["1-1", None]
    assert collect.episode_seed(0, "1-1", 0) != collect.episode_seed(0, "1-1", 1) != collect.episode_seed(1, "1-1", 0)


@pytest.mark.slow
def test_recording_benchmark_measures_all_three_and_the_storage(capsys):
    from experiments import benchmark_collect

    args = tyro.cli(benchmark_collect.Args, args=["--player", "run_right", "--steps", "60", "--rounds", "1"])
    result = benchmark_collect.main(args)
    assert all(len(values) == 1 and values[0] > 0 for values in result.steps_per_second.values())
    assert result.ratio_one == pytest.approx(result.median["one"] / result.median["env"])
    assert result.ratio_two == pytest.approx(result.median["two"] / result.median["one"])
    assert result.recorded_steps >= 60 and 500 < result.bytes_per_step < 10_000
    assert set(result.bytes_by_dataset) >= {"frames", "coords", "values", "state"}
    assert "(b)/(a)" in capsys.readouterr().out


def test_a_resume_fills_gaps_without_recording_anything_twice(tmp_path):
    output = tmp_path / "s.h5"
    run_collect(output, "--episodes", "4")
    ids = session_ids(output)
    session_file = SessionFile(output)
    missing = ids[1]
    del session_file._entries[missing]  # as if a killed two-worker run had finished episodes 0, 2 and 3 only
    session_file.shard_path(*missing).unlink()
    session_file._write_index()
    stamps = {sid: SessionFile(output).shard_path(key, sid).stat().st_mtime_ns for key, sid in ids if sid != missing[1]}
    result = run_collect(output, "--episodes", "4")
    assert result["recorded_sessions"] == 1 and result["skipped_sessions"] == 3
    assert session_ids(output) == ids
    for key, sid in ids:
        if sid != missing[1]:
            assert SessionFile(output).shard_path(key, sid).stat().st_mtime_ns == stamps[sid], "rewritten"


def test_stages_sharing_one_checkpoint_key_each_get_their_budget(tmp_path):
    output = tmp_path / "s.h5"
    run_collect(output, "--frames", "40", "--stages", "1-1", "1-2", "--checkpoint-key", "mixed")
    assert {key for key, _ in session_ids(output)} == {"mixed"}
    steps = steps_by_key(output, "stage")
    assert set(steps) == {"1-1", "1-2"} and all(value >= 40 for value in steps.values())


# --- damaged shards, moved files, unwritable paths -------------------------------------------------------


def test_a_damaged_shard_costs_exactly_its_session_and_a_rerun_records_it_again(tmp_path):
    output = tmp_path / "s.h5"
    run_collect(output, "--episodes", "3", "--player", "run_right")
    sessions = list_sessions(output)
    before = {session.session_id: session.states()[0] for session in sessions}
    victim = sessions[1]
    victim.shard_path.write_bytes(victim.shard_path.read_bytes()[:100])  # truncated by a crash or a bad copy

    with pytest.warns(UserWarning, match=f"skipping session {victim.name}.*{victim.shard_path.name}") as caught:
        readable = list_sessions(output)
    assert len(caught) == 1, "one warning per damaged session"
    assert [session.session_id for session in readable] == [sessions[0].session_id, sessions[2].session_id]

    with pytest.warns(UserWarning, match="skipping session"):
        summary = run_collect(output, "--episodes", "3", "--player", "run_right")
    assert summary["recorded_sessions"] == 1 and summary["skipped_sessions"] == 2
    again = {session.session_id: session.states()[0] for session in list_sessions(output)}
    assert again.keys() == before.keys()
    for session_id, states in before.items():  # the same arguments replay the same episode, bit for bit
        np.testing.assert_array_equal(again[session_id], states)


def test_check_sessions_reports_then_repairs_missing_and_damaged_shards(tmp_path):
    output = tmp_path / "s.h5"
    run_collect(output, "--episodes", "3", "--player", "run_right")
    sessions = list_sessions(output)
    sessions[0].shard_path.unlink()
    sessions[2].shard_path.write_bytes(b"not hdf5 at all")
    script = str(ROOT / "experiments" / "check_sessions.py")

    report = subprocess.run([sys.executable, script, str(output)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert report.returncode == 1, report.stderr
    assert "3 indexed session(s), 2 missing or damaged" in report.stdout
    assert f"damaged {sessions[0].name}: the shard file is missing" in report.stdout
    assert f"damaged {sessions[2].name}: the shard cannot be read" in report.stdout
    assert len(SessionFile(output)) == 3, "a report changes nothing"

    repaired = subprocess.run([sys.executable, script, str(output), "--repair"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
    assert repaired.returncode == 0 and "dropped 2 session(s)" in repaired.stdout
    assert [entry.session_id for entry in SessionFile(output).entries()] == [sessions[1].session_id]
    assert sessions[2].shard_path.read_bytes() == b"not hdf5 at all", "a damaged shard is kept for inspection"
    clean = subprocess.run([sys.executable, script, str(output)], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert clean.returncode == 0 and "0 missing or damaged, 0 stale link(s)" in clean.stdout


def test_an_index_moved_with_its_shards_folder_still_reads_and_repair_rewrites_its_links(tmp_path):
    import h5py

    output = tmp_path / "s.h5"
    run_collect(output, "--episodes", "2", "--player", "run_right")
    states = {session.session_id: session.states()[0] for session in list_sessions(output)}
    moved = tmp_path / "elsewhere" / "renamed.h5"
    moved.parent.mkdir()
    output.rename(moved)
    output.with_name("s.h5.shards").rename(moved.with_name("renamed.h5.shards"))

    session_file = SessionFile(moved)
    assert session_file.stale_links == 2 and not session_file.damaged()
    for session in list_sessions(moved):
        np.testing.assert_array_equal(session.states()[0], states[session.session_id])
    assert session_file.repair() == {"dropped": [], "relinked": 2}
    with h5py.File(moved, "r") as index:  # plain h5py follows the rewritten links again
        for session_id, expected in states.items():
            np.testing.assert_array_equal(index["smb1-1-1"][session_id]["state"][:], expected)
    assert SessionFile(moved).stale_links == 0


def test_an_unwritable_place_for_the_lock_or_the_index_is_an_error_that_changes_nothing(tmp_path, monkeypatch):
    output = tmp_path / "s.h5"
    run_collect(output, "--episodes", "1", "--player", "run_right")
    index_bytes = output.read_bytes()
    output.with_name("s.h5.lock").unlink(missing_ok=True)
    output.with_name("s.h5.lock").mkdir()  # the lock file cannot be created there
    result = subprocess.run([sys.executable, SCRIPT, "--output", str(output), "--no-progress", "--episodes", "1",
                             "--player", "run_right", "--max-steps", "30"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "the recorder needs a writable folder" in result.stderr
    assert "Traceback" not in result.stderr and output.read_bytes() == index_bytes

    import sgaps_env.session_file as session_file_module

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(session_file_module.tempfile, "mkstemp", refuse)
    with pytest.raises(session_file_module.SessionFileError, match="cannot write the index .*nothing was changed"):
        SessionFile(output).index_written("smb1-1-1", "x")
    assert output.read_bytes() == index_bytes


# --- the Ray backend ------------------------------------------------------------------------------------


def test_the_ray_backend_records_the_same_sessions_as_local_processes(tmp_path):
    pytest.importorskip("ray")
    common = ["--episodes", "2", "--stages", "1-1", "1-2", "--player", "heuristic", "--workers", "2"]
    local = run_collect(tmp_path / "local.h5", *common)
    remote = run_collect(tmp_path / "ray.h5", *common, "--backend", "ray")
    assert remote["recorded_sessions"] == local["recorded_sessions"] == 4
    local_sessions, ray_sessions = list_sessions(tmp_path / "local.h5"), list_sessions(tmp_path / "ray.h5")
    assert [s.name for s in ray_sessions] == [s.name for s in local_sessions]
    for ours, theirs in zip(local_sessions, ray_sessions):
        with ours.group() as a, theirs.group() as b:
            for name in ("frames", "palette", "coords", "values", "state", "state_mask", "buttons", "rewards",
                         "terminated", "truncated", "frame_index"):
                np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=f"{ours.name}: {name}")
        attrs_a, attrs_b = ours.attrs(), theirs.attrs()
        for varying in ("created", "wall_seconds"):
            attrs_a.pop(varying, None), attrs_b.pop(varying, None)
        assert attrs_a == attrs_b
    again = run_collect(tmp_path / "ray.h5", *common, "--backend", "ray")  # resume works the same way
    assert again["recorded_sessions"] == 0 and again["skipped_sessions"] == 4


def test_an_address_without_the_ray_backend_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--address 'auto' names a Ray cluster: add --backend ray"):
        run_collect(tmp_path / "s.h5", "--address", "auto")
