"""Compressed npz artifacts with JSON metadata (the tile codebook, the level atlas): written and read here.

Files from outside are read defensively: the file's size is bounded before it is opened, pickles are
refused, every entry's unpacked size is summed from the zip directory before any array is read, and the
metadata must be JSON. Each owner then checks its own arrays (names, dtypes, shapes, ranges) before use.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict) -> None:
    """Write ``arrays`` and JSON-able ``metadata`` (the split, the command, the sessions) as a compressed npz."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, metadata=np.array(json.dumps(metadata)), **arrays)


def read_npz(path: str | Path, what: str, build: str, max_bytes: int, max_unpacked: int) -> tuple[dict, dict]:
    """``(arrays, metadata)`` of a file from :func:`write_npz`.

    ``what`` names the artifact and ``build`` the command that makes one, for the messages; a file larger
    than ``max_bytes``, or whose arrays unpack to more than ``max_unpacked`` bytes, is refused unread."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}: build one with `{build}`")
    if path.stat().st_size > max_bytes:
        raise ValueError(f"{path} is {path.stat().st_size} bytes; a {what} is at most {max_bytes}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise ValueError(f"{path} is not a {what} (an npz from `{build}`): {error}") from error
    if not hasattr(archive, "files"):
        raise ValueError(f"{path} holds one array, not a {what} (an npz from `{build}`)")
    with archive:
        if "metadata" not in archive.files:
            raise ValueError(f"{path} has no metadata: it is not a {what} from `{build}`")
        unpacked = sum(archive.zip.getinfo(f"{name}.npy").file_size for name in archive.files)
        if unpacked > max_unpacked:  # np.load reads lazily: nothing has been unpacked yet
            raise ValueError(f"{path} unpacks to {unpacked} bytes, more than a {what} holds")
        arrays = {name: archive[name] for name in archive.files if name != "metadata"}
        try:
            metadata = json.loads(str(archive["metadata"]))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: its metadata is not JSON ({error})") from error
    return arrays, metadata
