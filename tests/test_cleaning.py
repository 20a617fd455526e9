"""models/cleaning.py and experiments/clean_sessions.py: the three stages, their counts, the index."""
import numpy as np
import pytest
import tyro

from agents import collect
from experiments import clean_sessions as cli
from models import cleaning
from models.cleaning import CleanIndex, CleaningConfig, clean_sessions, default_index_path, format_report
from models.dataset import SessionDataset
from sgaps_env.session_file import SessionData, SessionFile
from sgaps_env.state import STATE_FIELDS, STATE_INDEX

FIELDS = len(STATE_FIELDS)


def record(output, *extra):
    argv = ["--output", str(output), "--no-progress", "--max-steps", "40", *extra]
    return collect.main(tyro.cli(collect.Args, args=argv))


@pytest.fixture(scope="session")
def played(tmp_path_factory):
    """A real file: run_right on 1-1 and 1-2, and a player that only presses NOOP on 1-1 (stands still)."""
    path = tmp_path_factory.mktemp("cleaning") / "played.h5"
    record(path, "--stages", "1-1", "1-2", "--episodes", "1")
    record(path, "--player", "random", "--player-option", 'button_set=[["NOOP"]]', "--episodes", "1")
    return path


def base_state(rows):
    state = np.zeros((rows, 64), dtype=np.float32)
    mask = np.zeros((rows, 64), dtype=np.float32)
    mask[:, :FIELDS] = 1.0
    state[:, FIELDS:] = -999.0
    state[:, STATE_INDEX["game_mode"]] = 1 / 3
    state[:, STATE_INDEX["frame_phase"]] = (np.arange(rows) % 256) / 256  # clocks tick on every row
    state[:, STATE_INDEX["timer"]] = (400 - np.arange(rows) // 2) / 400
    return state, mask


def synthetic(key, session_id, state, mask, values=None, coords=None):
    rows = len(state)
    if coords is None:
        coords = np.tile(np.array([[0, 0], [1, 0], [2, 0], [3, 0]], dtype=np.uint8), (rows, 1, 1))
    if values is None:
        values = np.full((rows, coords.shape[1], 1), 0.5, dtype=np.float32)
    zeros = np.zeros(rows)
    return SessionData(key, session_id, coords=coords, values=values, state=state, state_mask=mask,
                       buttons=np.r_[-1, np.zeros(rows - 1)].astype(np.int16), rewards=zeros.astype(np.float32),
                       terminated=zeros.astype(bool), truncated=zeros.astype(bool), timestamps=zeros,
                       frame_index=np.arange(rows, dtype=np.int64), attrs={"env_config": {"color": "gray"}})


def moving(state, rows):
    state[rows, STATE_INDEX["player_level_x"]] = np.asarray(rows) * 0.01 + 0.001


@pytest.fixture
def prefilter_file(tmp_path):
    """40 rows: 0-9 moving, 10-12 NaN values, 13-14 one distinct pixel, 15-16 mask all zero, 17-19 title
    screen (game_mode 0), 20-29 a pause (only the clocks tick), 30-39 moving."""
    state, mask = base_state(40)
    moving(state, list(range(0, 20)) + list(range(30, 40)))
    values = np.full((40, 4, 1), 0.5, dtype=np.float32)
    coords = np.tile(np.array([[0, 0], [1, 0], [2, 0], [3, 0]], dtype=np.uint8), (40, 1, 1))
    values[10:13] = np.nan
    mask[12] = 0.0  # also an invalid state: counted under the first reason, few pixels
    coords[13:15] = 7
    mask[15:17] = 0.0
    state[17:20, STATE_INDEX["game_mode"]] = 0.0
    state[20:30, STATE_INDEX["player_level_x"]] = 0.5  # the pause: the same state for ten rows
    session_file = SessionFile(tmp_path / "pre.h5", create=True)
    session_file.add(synthetic("synthetic-a", "pre", state, mask, values, coords))
    return session_file.path


def test_stage_counts_and_reasons_on_constructed_rows(prefilter_file):
    index = clean_sessions(prefilter_file, CleaningConfig(min_pixels=2, balance=False), progress=False)
    counts = index.meta["counts"]
    assert (counts["few_pixels"], counts["invalid_state"], counts["not_playing"]) == (5, 2, 3)
    assert counts["prefilter"] == 10
    # row 20 enters the pause (it differs from row 19), rows 21-29 only tick the clocks
    assert counts["stationary"] == 9 and counts["balancing"] == 0 and counts["kept"] == 21 == len(index)
    assert sorted(index.row.tolist()) == list(range(10)) + [20] + list(range(30, 40))
    assert counts["input"] == counts["prefilter"] + counts["stationary"] + counts["balancing"] + counts["kept"]

    lenient = clean_sessions(prefilter_file, CleaningConfig(min_pixels=1, require_playing=False, balance=False),
                             progress=False)
    assert (lenient.meta["counts"]["few_pixels"], lenient.meta["counts"]["not_playing"]) == (3, 0)
    assert {17, 18, 19, 13, 14} <= set(lenient.row.tolist())
    clocks = clean_sessions(prefilter_file, CleaningConfig(ignore_fields=(), balance=False), progress=False)
    assert clocks.meta["counts"]["stationary"] == 0, "without ignoring the clocks, a pause is never stationary"


@pytest.fixture
def cluster_file(tmp_path):
    """Three situations: ordinary running (120 rows), big Mario (20 rows), star power (6 rows)."""
    sizes = {"running": 120, "big": 20, "star": 6}
    state, mask = base_state(sum(sizes.values()))
    state[:, STATE_INDEX["player_level_x"]] = np.arange(len(state)) * 1e-4  # every row moves a little
    state[120:140, STATE_INDEX["powerup"]] = 1.0
    state[140:146, STATE_INDEX["star_timer"]] = 1.0
    session_file = SessionFile(tmp_path / "clusters.h5", create=True)
    session_file.add(synthetic("synthetic-b", "clusters", state, mask))
    return session_file.path


def test_balancing_caps_big_clusters_and_keeps_rare_ones_whole(cluster_file, monkeypatch):
    index = clean_sessions(cluster_file, CleaningConfig(clusters=3), progress=False)
    rows = np.array(sorted(index.row.tolist()))
    balancing = index.meta["balancing"]
    assert sorted(balancing["sizes"]) == [6, 20, 120] and balancing["cap"] == 40  # 2 x the median, 20
    assert ((rows >= 120) & (rows < 146)).sum() == 26, "the rare clusters are kept whole"
    assert (rows < 120).sum() == 40 and index.meta["counts"]["balancing"] == 80 and len(index) == 66
    assert len(np.unique(rows)) == len(rows)

    capped = clean_sessions(cluster_file, CleaningConfig(clusters=3, cluster_cap=10), progress=False)
    capped_rows = capped.row
    assert ((capped_rows < 120).sum(), ((capped_rows >= 120) & (capped_rows < 140)).sum(),
            (capped_rows >= 140).sum()) == (10, 10, 6)

    again = clean_sessions(cluster_file, CleaningConfig(clusters=3), progress=False)
    np.testing.assert_array_equal(again.row, index.row)  # seeded: the same rows every time
    other_seed = clean_sessions(cluster_file, CleaningConfig(clusters=3, seed=1), progress=False)
    assert not np.array_equal(np.sort(other_seed.row), np.sort(index.row))

    monkeypatch.setattr(cleaning, "EXACT_KMEANS_ROWS", 0)  # the large-data path
    mini = clean_sessions(cluster_file, CleaningConfig(clusters=3), progress=False)
    assert mini.meta["balancing"]["algorithm"] == "MiniBatchKMeans" and sorted(mini.meta["balancing"]["sizes"]) == [6, 20, 120]


def test_noop_player_rows_are_removed_as_stationary(played):
    index = clean_sessions(played, CleaningConfig(balance=False), progress=False)
    noop = [e.session_id for e in SessionFile(played).entries() if e.session_id.startswith("random-")]
    assert len(noop) == 1
    assert ("smb1-1-1", noop[0]) not in index.sessions, "every row of standing still is stationary"
    per_key = index.meta["per_key"]
    assert per_key["smb1-1-1"]["stationary"] >= 41  # the NOOP session's 41 rows
    running = per_key["smb1-1-2"]
    assert running["kept"] >= 0.8 * running["input"], "a player running right is rarely stationary"


def test_counts_add_up_and_the_index_round_trips_through_the_dataset(played, tmp_path):
    index = clean_sessions(played, CleaningConfig(clusters=4, cluster_cap=5), progress=False)
    counts, per_key = index.meta["counts"], index.meta["per_key"]
    for row in [counts, *per_key.values()]:
        assert row["input"] == row["prefilter"] + row["stationary"] + row["balancing"] + row["kept"]
        assert row["prefilter"] == sum(row[reason] for reason in cleaning.REASONS)
    for name in counts:
        assert counts[name] == sum(row[name] for row in per_key.values())
    with SessionFile(played).open() as handle:
        assert counts["input"] == sum(len(handle[e.checkpoint_key][e.session_id]["buttons"])
                                      for e in SessionFile(played).entries())
    assert counts["kept"] == len(index) > 0 and counts["balancing"] > 0

    path = index.save(tmp_path / "played.clean.npz")
    loaded = CleanIndex.load(path)
    assert list(loaded) == list(index) and loaded.meta == index.meta
    dataset = SessionDataset(played, split=None, index=path, load_frames=False)
    items = {(dataset.sessions[s].checkpoint_key, dataset.sessions[s].session_id, r)
             for s, r in map(dataset.locate, range(len(dataset)))}
    assert items == set(index) and len(dataset) == len(index)
    item = dataset[len(dataset) - 1]
    assert (dataset.sessions[item["session"].item()].session_id, item["row"].item()) in \
        {(sid, row) for _, sid, row in index}


def test_the_command_line_writes_the_index_and_prints_the_table(played, capsys):
    result = cli.main(tyro.cli(cli.Args, args=["--inputs", str(played), "--no-progress", "--clusters", "4"]))
    out = capsys.readouterr().out
    assert result["output"] == str(default_index_path(played)) and default_index_path(played).exists()
    assert "1 pre-filter" in out and "2 stationary" in out and "3 balancing (4 clusters" in out
    assert "smb1-1-1" in out and "smb1-1-2" in out and f"{result['counts']['kept']:,}" in out
    assert len(CleanIndex.load(result["output"])) == result["counts"]["kept"]


def test_bad_input_fails_clearly(tmp_path, played):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        clean_sessions(tmp_path / "missing.h5", progress=False)
    SessionFile(tmp_path / "empty.h5", create=True)
    with pytest.raises(ValueError, match="no sessions"):
        clean_sessions(tmp_path / "empty.h5", progress=False)
    with pytest.raises(ValueError, match="unknown state field"):
        clean_sessions(played, CleaningConfig(ignore_fields=("clock",)), progress=False)
    with pytest.raises(ValueError, match="clusters"):
        clean_sessions(played, CleaningConfig(clusters=0), progress=False)
    with pytest.raises(ValueError, match="more than one"):
        clean_sessions([played, played], progress=False)
    (tmp_path / "junk.npz").write_bytes(b"not an index")
    with pytest.raises(ValueError, match="not a cleaned index"):
        CleanIndex.load(tmp_path / "junk.npz")
    assert "stage" in format_report(clean_sessions(played, CleaningConfig(balance=False), progress=False).meta)
