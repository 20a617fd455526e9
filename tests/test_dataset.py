"""models/dataset.py: rows as recorded, history, re-sampling, splits by session, workers, errors."""
import os
import pickle

import numpy as np
import pytest
import torch
import tyro
from torch.utils.data import DataLoader

from agents import collect
from models.dataset import Resample, SessionDataset, collate_sparse, parse_resample
from sgaps_env.coords import extract_pixels, frame_values
from sgaps_env.session_file import SessionFile, frames_rgb, session_pixels, split_of


def record(output, *extra):
    argv = ["--output", str(output), "--no-progress", "--max-steps", "25", *extra]
    return collect.main(tyro.cli(collect.Args, args=argv))


@pytest.fixture(scope="session")
def recorded(tmp_path_factory):
    """Small real session files: 'gray' (4 sessions over 1-1 and 1-2), 'rgb' (1 session), 'noframes' (1)."""
    root = tmp_path_factory.mktemp("dataset")
    record(root / "gray.h5", "--episodes", "2", "--stages", "1-1", "1-2", "--player", "random")
    record(root / "rgb.h5", "--episodes", "1", "--color", "rgb", "--sample-count", "200")
    record(root / "noframes.h5", "--episodes", "1", "--no-store-frames")
    return root


def true_rows(path, dataset, index):
    """What the session file itself says about item ``index``: (frames_rgb, session_pixels, state, mask)."""
    session, row = dataset.locate(index)
    info = dataset.sessions[session]
    with SessionFile(path).open() as handle:
        group = handle[info.checkpoint_key][info.session_id]
        return (frames_rgb(group, slice(0, row + 1)), session_pixels(group, row), group["state"][row],
                group["state_mask"][row])


def test_items_are_the_recorded_rows_exactly(recorded):
    path = recorded / "gray.h5"
    dataset = SessionDataset(path, split=None)
    with SessionFile(path).open() as handle:
        total = sum(len(handle[e.checkpoint_key][e.session_id]["buttons"]) for e in SessionFile(path).entries())
    assert len(dataset) == total and len(dataset.sessions) == 4
    for index in [0, 1, len(dataset) // 2, len(dataset) - 1]:
        item = dataset[index]
        frames, pixels, state, mask = true_rows(path, dataset, index)
        assert item["row"].item() == dataset.locate(index)[1] and item["session"].item() == dataset.locate(index)[0]
        np.testing.assert_array_equal(item["pixels"].numpy(), pixels)
        np.testing.assert_array_equal(item["state"].numpy(), state)
        np.testing.assert_array_equal(item["state_mask"].numpy(), mask)
        assert item["frame"].shape == (3, 240, 256) and item["frame"].dtype == torch.float32
        np.testing.assert_array_equal(item["frame"].numpy(), frame_values(frames[-1], "rgb").transpose(2, 0, 1))
        np.testing.assert_array_equal(item["frame_gray"].numpy(), frame_values(frames[-1], "gray").transpose(2, 0, 1))
        assert "previous_frames" not in item
    assert dataset[-1]["row"] == dataset[len(dataset) - 1]["row"]
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_history_frames_are_the_previous_rows(recorded):
    path = recorded / "gray.h5"
    dataset = SessionDataset(path, split=None, history=3)
    for index in range(5):  # rows 0..4 of the first session: history reaches before the start
        item = dataset[index]
        frames, *_ = true_rows(path, dataset, index)
        row = item["row"].item()
        assert row == index and item["previous_frames"].shape == (3, 3, 240, 256)
        expected_rows = [max(r, 0) for r in range(row - 3, row)]
        expected = frame_values(frames[expected_rows], "rgb").transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(item["previous_frames"].numpy(), expected)
        assert item["previous_valid"].tolist() == [r >= 0 for r in range(row - 3, row)]
    batch = collate_sparse([dataset[0], dataset[4]])
    assert batch["previous_frames"].shape == (2, 3, 3, 240, 256) and batch["pixel_mask"].all()


@pytest.mark.parametrize("path_name, spec, counts", [
    ("gray.h5", "random:50-200", (50, 200)),
    ("rgb.h5", ("stratified", 64), (64, 64)),
    ("gray.h5", Resample("uniform_grid", 100), (100, 100)),
])
def test_resampled_pixels_come_from_the_true_frame_deterministically(recorded, path_name, spec, counts):
    path = recorded / path_name
    dataset = SessionDataset(path, split=None, resample=spec, resample_seed=7)
    color = "rgb" if path_name == "rgb.h5" else "gray"
    pattern = parse_resample(spec)
    sizes = set()
    for index in [0, 3, len(dataset) - 1]:
        item = dataset[index]
        frames, observed, *_ = true_rows(path, dataset, index)
        coords = pattern(np.random.default_rng((7, index)), frames[-1], {})
        np.testing.assert_array_equal(item["pixels"].numpy(), extract_pixels(frames[-1], coords, color))
        assert counts[0] <= len(item["pixels"]) <= counts[1] and item["pixels"].shape[1] == (5 if color == "rgb" else 3)
        np.testing.assert_array_equal(dataset[index]["pixels"].numpy(), item["pixels"].numpy())  # same (seed, index)
        sizes.add(len(item["pixels"]))
    other = SessionDataset(path, split=None, resample=spec, resample_seed=8)
    if spec != Resample("uniform_grid", 100):  # a fixed grid is the same for every seed
        assert not np.array_equal(other[3]["pixels"].numpy(), dataset[3]["pixels"].numpy())


def test_a_callable_resampler_gets_the_true_frame_and_row_info(recorded):
    seen = []

    def corners(rng, frame, info):
        seen.append((frame.shape, frame.dtype, info["row"], info["color"], info["pixels"].shape))
        return np.array([[0.0, 0.0], [1.0, 1.0], [rng.random(), 0.5]])

    dataset = SessionDataset(recorded / "gray.h5", split=None, resample=corners, load_frames=False)
    item = dataset[2]
    assert seen == [((240, 256, 3), np.uint8, 2, "gray", (500, 3))]
    assert item["pixels"].shape == (3, 3) and "frame" not in item
    np.testing.assert_allclose(item["pixels"][:2, :2].numpy(), [[0.5 / 256, 0.5 / 240], [255.5 / 256, 239.5 / 240]])
    with pytest.raises(ValueError, match="outside"):
        SessionDataset(recorded / "gray.h5", split=None, resample=lambda rng, f, i: np.array([[2.0, 0.0]]))[0]


def test_collate_sparse_pads_variable_counts_with_a_mask():
    batch = [{"pixels": torch.ones(n, 3), "row": torch.tensor(n)} for n in (2, 5, 3)]
    out = collate_sparse(batch)
    assert out["pixels"].shape == (3, 5, 3) and out["row"].tolist() == [2, 5, 3]
    assert out["pixel_mask"].sum(1).tolist() == [2, 5, 3]
    assert (out["pixels"][~out["pixel_mask"]] == 0).all() and (out["pixels"][out["pixel_mask"]] == 1).all()


def sessions_of(dataset):
    return {(info.checkpoint_key, info.session_id) for info in dataset.sessions}


def test_splits_are_by_session_disjoint_and_cover_everything(recorded):
    path = recorded / "gray.h5"
    names = [(e.checkpoint_key, e.session_id) for e in SessionFile(path).entries()]
    fractions = (0.5, 0.25, 0.25)
    seed = next(s for s in range(200) if len({split_of(*n, fractions, s) for n in names}) == 3)
    parts = {split: SessionDataset(path, split=split, split_fractions=fractions, split_seed=seed, load_frames=False)
             for split in ("train", "val", "test")}
    found = [sessions_of(part) for part in parts.values()]
    assert set().union(*found) == set(names) and sum(map(len, found)) == len(names)
    assert sum(len(part) for part in parts.values()) == len(SessionDataset(path, split=None, load_frames=False))
    for split, part in parts.items():  # every row of a session goes with it
        rows = {(part.sessions[s].session_id, r) for s, r in map(part.locate, range(len(part)))}
        assert len(rows) == sum(info.rows for info in part.sessions)
        assert {info.split for info in part.sessions} == {split}


def test_splits_do_not_move_when_sessions_are_appended(tmp_path):
    path = tmp_path / "grow.h5"
    record(path, "--episodes", "3", "--max-steps", "8")
    fractions = (0.4, 0.3, 0.3)
    before = {(info.checkpoint_key, info.session_id): info.split
              for info in SessionDataset(path, split=None, split_fractions=fractions, load_frames=False).sessions}
    record(path, "--episodes", "9", "--max-steps", "8")  # appends six sessions
    record(path, "--episodes", "2", "--max-steps", "8", "--stages", "1-2")  # and another checkpoint key
    after = {(info.checkpoint_key, info.session_id): info.split
             for info in SessionDataset(path, split=None, split_fractions=fractions, load_frames=False).sessions}
    assert len(after) == 11 and {name: after[name] for name in before} == before
    assert len(set(after.values())) >= 2  # the test means something: the sessions are spread over splits
    val = SessionDataset(path, split="val", split_fractions=fractions, load_frames=False)
    assert sessions_of(val) == {name for name, split in after.items() if split == "val"}


def test_checkpoint_keys_and_index_restrict_the_items(recorded):
    path = recorded / "gray.h5"
    only = SessionDataset(path, split=None, checkpoint_keys=["smb1-1-2"], load_frames=False)
    assert {info.checkpoint_key for info in only.sessions} == {"smb1-1-2"}
    entry = SessionFile(path).entries()[1]
    triples = [(entry.checkpoint_key, entry.session_id, row) for row in (5, 1, 3, 3)]
    chosen = SessionDataset(path, split=None, index=triples, history=1)
    assert len(chosen) == 3 and [chosen[i]["row"].item() for i in range(3)] == [1, 3, 5]
    assert chosen[0]["previous_valid"].tolist() == [True]  # history ignores the index: the true previous row
    with pytest.raises(ValueError, match="not in"):
        SessionDataset(path, split=None, index=[("smb1-9-9", "nope", 0)])
    with pytest.raises(ValueError, match="row 999"):
        SessionDataset(path, split=None, index=[(entry.checkpoint_key, entry.session_id, 999)])


class PidProbe(torch.utils.data.Dataset):
    """Reads an item of a SessionDataset, then says which process read it and whose handles it used."""

    def __init__(self, dataset):
        self.dataset, self.parent = dataset, os.getpid()

    def __len__(self):
        return 2

    def __getitem__(self, index):
        self.dataset[index]
        return torch.tensor([os.getpid(), self.dataset._pid, self.parent])


# DataLoader workers fork (the Linux default) a process in which torch has started threads; Python warns
# about that in general, but forking is exactly the case the dataset's per-process handles exist for.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_two_workers_yield_the_same_batches_as_none(recorded):
    path = recorded / "gray.h5"
    entries = SessionFile(path).entries()
    triples = [(e.checkpoint_key, e.session_id, row) for e in entries for row in range(0, 20, 3)]
    dataset = SessionDataset(path, split=None, index=triples, history=1, resample="random:20-60", max_open_files=2)
    dataset[0]  # the main process opens files first: workers must not use its handles
    batches = {}
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=5, num_workers=workers, collate_fn=collate_sparse,
                            multiprocessing_context="fork" if workers else None)
        batches[workers] = list(loader)
    assert len(batches[0]) == len(batches[2]) == -(-len(dataset) // 5)
    for one, two in zip(batches[0], batches[2]):
        assert one.keys() == two.keys()
        for key in one:
            torch.testing.assert_close(one[key], two[key], rtol=0, atol=0)
    probe = DataLoader(PidProbe(dataset), batch_size=None, num_workers=1, multiprocessing_context="fork")
    for worker_pid, handles_pid, parent_pid in probe:  # a worker reads through handles it opened itself
        assert worker_pid == handles_pid != parent_pid == os.getpid()
    clone = pickle.loads(pickle.dumps(dataset))  # spawn-started workers pickle the dataset
    torch.testing.assert_close(clone[3]["pixels"], dataset[3]["pixels"], rtol=0, atol=0)


def test_sessions_without_frames_need_load_frames_false(recorded):
    path = recorded / "noframes.h5"
    with pytest.raises(ValueError, match="without frames"):
        SessionDataset(path, split=None)
    with pytest.raises(ValueError, match="re-sampling"):
        SessionDataset(path, split=None, load_frames=False, resample="random:10")
    item = SessionDataset(path, split=None, load_frames=False)[0]
    assert set(item) == {"pixels", "state", "state_mask", "session", "row"}


def test_clear_errors(recorded, tmp_path):
    path = recorded / "gray.h5"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SessionDataset(tmp_path / "missing.h5")
    SessionFile(tmp_path / "empty.h5", create=True)
    with pytest.raises(ValueError, match="no sessions"):
        SessionDataset(tmp_path / "empty.h5")
    with pytest.raises(ValueError, match="split must be one of"):
        SessionDataset(path, split="validation")
    with pytest.raises(ValueError, match="history"):
        SessionDataset(path, history=-1)
    with pytest.raises(ValueError, match="split_fractions"):
        SessionDataset(path, split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="unknown sampling pattern"):
        SessionDataset(path, split=None, resample="spiral:10")
    with pytest.raises(ValueError, match="PATTERN:COUNT"):
        SessionDataset(path, split=None, resample="random")
    with pytest.raises(ValueError, match="min <= max"):
        Resample("random", (10, 5))
    with pytest.raises(ValueError, match="none of the"):
        SessionDataset(path, split="test", split_fractions=(1.0, 0.0, 0.0))
