"""The cleaning pipeline: which recorded rows are worth training on. Its output is an INDEX, not a copy.

Three stages, each counting the rows it removes (``python experiments/clean_sessions.py --help``):

1. **Pre-filtering.** A row is dropped when

   * it has fewer than ``min_pixels`` valid sampled pixels: distinct in-frame positions whose values
     are finite and in [0, 1] (a recorder fault, or a sampler that sampled nothing useful);
   * its state is invalid: ``state_mask`` is all zero (padding only), or a valid entry is NaN/inf;
   * (``require_playing``) the ``game_mode`` field is valid and is not 1, "playing": 0 is the title /
     demo screen, 2 the end-of-world sequence (see ``docs/state_vector.md``).

   A row failing several rules is counted under the first one, in this order, so the reasons add up.

2. **Stationarity.** The velocity of row ``t`` is the L2 norm of ``state[t] - state[t - 1]`` over
   the entries valid in both rows, leaving out the clock fields (``frame_phase``, ``timer``, ``color_rotation``: they
   tick while nothing happens); row 0 uses its difference to row 1. Rows with velocity below
   ``min_velocity`` are dropped: waiting, pauses, loading and intermission screens.

   The default ``min_velocity = 1e-6`` means "nothing but the clocks changed". The state is
   quantised (a field moves by at least one RAM unit over its scale: 1/4096 for a level position,
   1/256 for a screen position, 1e-5 for the score), so any real change is far above 1e-6 and an
   unchanged state is exactly 0; no data-dependent tuning is needed, and unlike a percentile it
   removes nothing from a dataset that has no waiting in it. The report prints the velocity
   distribution for choosing a larger threshold (e.g. to also drop "only an enemy walked" rows).
   Dropping every stationary row still keeps each pause represented: the row that *entered* it
   differs from its predecessor, so it survives.

3. **Balancing.** k-means (scikit-learn, seeded; ``KMeans`` up to 10,000 rows, ``MiniBatchKMeans``
   beyond) on the state vectors of the surviving rows, with masked entries set to 0 and the clock
   fields left out. Clusters larger than ``cluster_cap`` rows (default ``cap_factor`` x the median
   cluster size) are randomly (seeded) down-sampled to the cap; smaller clusters are kept whole, so
   rare situations keep all their rows while the long runs of ordinary running are thinned.

``clean_sessions(paths, CleaningConfig(...))`` returns a ``CleanIndex``: ``(checkpoint_key,
session_id, row)`` triples with the parameters and per-stage counts. ``CleanIndex.save`` writes a
small ``.npz`` (by default beside the session file: ``sessions.h5`` -> ``sessions.clean.npz``) that
``SessionDataset(index=...)`` accepts.
"""
from __future__ import annotations

import datetime as _datetime
import json
import math
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from sgaps_env.session_file import list_sessions, session_file_paths
from sgaps_env.state import STATE_FIELDS, STATE_INDEX

INDEX_FORMAT = "sgaps-clean-index"
INDEX_VERSION = 1
#: Fields that change while nothing happens: left out of the velocity and the clustering by default.
CLOCK_FIELDS = ("frame_phase", "timer", "color_rotation")
#: Rows up to which the exact ``KMeans`` is used; ``MiniBatchKMeans`` beyond.
EXACT_KMEANS_ROWS = 10_000
#: Value of ``game_mode`` (RAM 0x0770) while a stage is being played.
GAME_MODE_PLAYING = 1

REASONS = ("few_pixels", "invalid_state", "not_playing")


@dataclass
class CleaningConfig:
    """Parameters of the pipeline (the command-line options of ``experiments/clean_sessions.py``)."""

    min_pixels: int = 1
    require_playing: bool = True
    min_velocity: float = 1e-6
    ignore_fields: Sequence[str] = CLOCK_FIELDS
    balance: bool = True
    clusters: int = 32
    cluster_cap: int | None = None
    cap_factor: float = 2.0
    seed: int = 0

    def validate(self) -> None:
        if self.min_pixels < 0:
            raise ValueError(f"min_pixels must be >= 0, got {self.min_pixels}")
        if not self.min_velocity >= 0:
            raise ValueError(f"min_velocity must be >= 0, got {self.min_velocity}")
        unknown = [name for name in self.ignore_fields if name not in STATE_INDEX]
        if unknown:
            raise ValueError(f"unknown state field(s) {unknown} in ignore_fields: expected names from "
                             "sgaps_env.STATE_FIELDS (docs/state_vector.md)")
        if self.clusters < 1:
            raise ValueError(f"clusters must be at least 1, got {self.clusters}")
        if self.cluster_cap is not None and self.cluster_cap < 1:
            raise ValueError(f"cluster_cap must be at least 1 (or None for cap_factor x the median), "
                             f"got {self.cluster_cap}")
        if not self.cap_factor > 0:
            raise ValueError(f"cap_factor must be positive, got {self.cap_factor}")


# --- per-row measurements -------------------------------------------------------------------------------


def valid_pixel_counts(coords: np.ndarray, values: np.ndarray, height: int = 240, width: int = 256) -> np.ndarray:
    """``(T,)`` number of distinct in-frame positions per row whose values are all finite and in [0, 1]."""
    coords = np.asarray(coords).astype(np.int64)
    values = np.asarray(values)
    if coords.shape[1] == 0:
        return np.zeros(len(coords), dtype=np.int64)
    good = np.isfinite(values).all(-1) & (values >= 0).all(-1) & (values <= 1).all(-1)
    good &= (coords[..., 0] < width) & (coords[..., 1] < height) & (coords >= 0).all(-1)
    keys = np.where(good, coords[..., 1] * width + coords[..., 0], -1)
    keys.sort(axis=1)
    new = np.ones(keys.shape, dtype=bool)
    new[:, 1:] = keys[:, 1:] != keys[:, :-1]
    return (new & (keys >= 0)).sum(axis=1)


def field_columns(state_dim: int, ignore_fields: Iterable[str] = CLOCK_FIELDS) -> np.ndarray:
    """Columns of the named state fields (padding excluded) minus ``ignore_fields``."""
    ignored = {STATE_INDEX[name] for name in ignore_fields}
    return np.array([column for column in range(min(state_dim, len(STATE_FIELDS))) if column not in ignored],
                    dtype=np.int64)


def state_velocity(state: np.ndarray, state_mask: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``(T,)`` L2 norm of each row's state change from the previous row, over ``columns`` valid in both
    rows; row 0 takes row 1's value (its change to the next row). Rows sharing no valid column with
    their predecessor, and a single-row session, get inf (they cannot be judged stationary)."""
    state = np.asarray(state, dtype=np.float64)[:, columns]
    mask = np.asarray(state_mask)[:, columns] > 0
    if len(state) < 2:
        return np.full(len(state), np.inf)
    both = mask[1:] & mask[:-1]
    difference = np.where(both, state[1:] - state[:-1], 0.0)
    speed = np.sqrt((difference ** 2).sum(axis=1))
    speed[~both.any(axis=1)] = np.inf  # nothing to compare (e.g. next to an invalid row): not judged stationary
    return np.concatenate([speed[:1], speed])


def state_features(state: np.ndarray, state_mask: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Clustering features: the state over ``columns`` with masked (sentinel) entries set to 0."""
    return np.where(np.asarray(state_mask)[:, columns] > 0, np.asarray(state)[:, columns], 0.0).astype(np.float32)


def prefilter_reasons(pixel_counts: np.ndarray, state: np.ndarray, state_mask: np.ndarray, min_pixels: int,
                      require_playing: bool) -> np.ndarray:
    """``(T,)`` int8: -1 where the row passes, else the index into ``REASONS`` of the first rule it fails."""
    reason = np.full(len(state), -1, dtype=np.int8)
    valid = state_mask > 0
    invalid_state = ~valid.any(axis=1) | (~np.isfinite(state) & valid).any(axis=1)
    not_playing = np.zeros(len(state), dtype=bool)
    column = STATE_INDEX["game_mode"]
    if require_playing and column < state.shape[1]:
        mode = np.rint(state[:, column] * STATE_FIELDS[column].scale)
        not_playing = valid[:, column] & (mode != GAME_MODE_PLAYING)
    for code, failed in reversed(list(enumerate([pixel_counts < min_pixels, invalid_state, not_playing]))):
        reason[failed] = code
    return reason


def balance_clusters(features: np.ndarray, clusters: int, cluster_cap: int | None = None, cap_factor: float = 2.0,
                     seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """k-means on ``features`` (n, F); returns a keep mask (n,) that caps every cluster at the cap,
    and a summary (clusters used, cap, algorithm, sizes before and after)."""
    count = len(features)
    if count == 0:
        return np.zeros(0, dtype=bool), {"clusters": 0, "cap": cluster_cap, "algorithm": None, "sizes": [],
                                         "kept_sizes": []}
    distinct = len(np.unique(features, axis=0))
    k = max(1, min(clusters, distinct))
    from sklearn.cluster import KMeans, MiniBatchKMeans  # imported here: the dataset needs no scikit-learn

    if count <= EXACT_KMEANS_ROWS:
        model, algorithm = KMeans(n_clusters=k, n_init=3, random_state=seed), "KMeans"
    else:
        model, algorithm = MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=4096, random_state=seed), \
            "MiniBatchKMeans"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning when near-duplicate rows merge clusters
        labels = model.fit_predict(features.astype(np.float64)) if k > 1 else np.zeros(count, dtype=np.int64)
    sizes = np.bincount(labels, minlength=k)
    cap = int(cluster_cap) if cluster_cap is not None else \
        max(1, math.ceil(cap_factor * float(np.median(sizes[sizes > 0]))))
    keep = np.ones(count, dtype=bool)
    rng = np.random.default_rng(seed)
    for label in np.flatnonzero(sizes > cap):
        members = np.flatnonzero(labels == label)
        keep[members] = False
        keep[rng.choice(members, size=cap, replace=False)] = True
    kept_sizes = np.bincount(labels[keep], minlength=k)
    return keep, {"clusters": int(k), "cap": cap, "algorithm": algorithm, "sizes": sizes.tolist(),
                  "kept_sizes": kept_sizes.tolist(), "labels": labels}


# --- the index ------------------------------------------------------------------------------------------


@dataclass
class CleanIndex:
    """The rows the pipeline kept: ``sessions[session[i]]`` is the ``(checkpoint_key, session_id)`` of row
    ``row[i]``; ``meta`` holds the parameters and the per-stage counts."""

    sessions: list[tuple[str, str]]
    session: np.ndarray
    row: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.row)

    def __iter__(self) -> Iterator[tuple[str, str, int]]:
        for session, row in zip(self.session.tolist(), self.row.tolist()):
            yield (*self.sessions[session], row)

    def rows_by_session(self) -> dict[tuple[str, str], np.ndarray]:
        order = np.argsort(self.session, kind="stable")
        session, row = self.session[order], self.row[order]
        bounds = np.flatnonzero(np.diff(session)) + 1
        return {self.sessions[int(part_sessions[0])]: part_rows
                for part_sessions, part_rows in zip(np.split(session, bounds), np.split(row, bounds))
                if len(part_sessions)}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index as ``.npz`` atomically (a temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        names = np.array(self.sessions, dtype=str).reshape(-1, 2)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez_compressed(stream, sessions=names, session=self.session.astype(np.int32),
                                    row=self.row.astype(np.int32), meta=np.array(json.dumps(self.meta)))
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CleanIndex":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"cleaned index {path} does not exist: make it with "
                                    "`python experiments/clean_sessions.py --inputs SESSIONS.h5`")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                sessions = [(str(key), str(sid)) for key, sid in data["sessions"].reshape(-1, 2)]
                session, row = data["session"].astype(np.int64), data["row"].astype(np.int64)
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"{path} is not a cleaned index ({error})") from error
        if meta.get("format") != INDEX_FORMAT:
            raise ValueError(f"{path} is not a cleaned index (format {meta.get('format')!r})")
        if meta.get("format_version") != INDEX_VERSION:
            raise ValueError(f"{path} is a cleaned index of version {meta.get('format_version')}; this code "
                             f"reads version {INDEX_VERSION}: clean the sessions again")
        return cls(sessions, session, row, meta)


def default_index_path(session_path: str | os.PathLike) -> Path:
    """``data/sessions.h5`` -> ``data/sessions.clean.npz``."""
    path = Path(session_path)
    return path.with_name(path.stem + ".clean.npz")


# --- the pipeline ---------------------------------------------------------------------------------------


def _empty_counts() -> dict[str, int]:
    return {"sessions": 0, "input": 0, "prefilter": 0, **{reason: 0 for reason in REASONS}, "stationary": 0,
            "balancing": 0, "kept": 0}


def clean_sessions(paths, config: CleaningConfig | None = None, progress: bool = True) -> CleanIndex:
    """Run the three stages over every session of the given session files; returns the kept rows."""
    config = config or CleaningConfig()
    config.validate()
    paths = session_file_paths(paths)
    sessions = list_sessions(paths)
    total_sessions = len(sessions)
    if total_sessions == 0:
        raise ValueError(f"no sessions in {', '.join(map(str, paths))}")

    names: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    survivors_session, survivors_row, features, velocities = [], [], [], []
    per_key: dict[str, dict[str, int]] = {}
    bar = tqdm(total=total_sessions, desc="reading sessions", unit="session", disable=not progress)
    for recorded in sessions:
        with recorded.group() as group:
            name = (recorded.checkpoint_key, recorded.session_id)
            if name in seen:
                raise ValueError(f"session {name[0]}/{name[1]} is in more than one of the given files: "
                                 "clean them one at a time")
            seen.add(name)
            number = len(names)
            names.append(name)
            state, mask = group["state"][:], group["state_mask"][:]
            height, width = (int(size) for size in group.attrs.get("resolution", (240, 256)))
            pixels = valid_pixel_counts(group["coords"][:], group["values"][:], height, width)
            columns = field_columns(state.shape[1], config.ignore_fields)
            reasons = prefilter_reasons(pixels, state, mask, config.min_pixels, config.require_playing)
            velocity = state_velocity(state, mask, columns)
            passed = reasons < 0
            moving = passed & (velocity >= config.min_velocity)

            counts = per_key.setdefault(recorded.checkpoint_key, _empty_counts())
            counts["sessions"] += 1
            counts["input"] += len(state)
            counts["prefilter"] += int((~passed).sum())
            for code, reason in enumerate(REASONS):
                counts[reason] += int((reasons == code).sum())
            counts["stationary"] += int((passed & ~moving).sum())
            velocities.append(velocity[passed & np.isfinite(velocity)])
            rows = np.flatnonzero(moving)
            survivors_session.append(np.full(len(rows), number, dtype=np.int64))
            survivors_row.append(rows)
            features.append(state_features(state[rows], mask[rows], columns))
            bar.update(1)
    bar.close()

    session = np.concatenate(survivors_session)
    row = np.concatenate(survivors_row)
    matrix = np.concatenate(features) if features else np.zeros((0, 0), dtype=np.float32)
    balancing: dict[str, Any] = {"enabled": bool(config.balance)}
    if config.balance:
        keep, summary = balance_clusters(matrix, config.clusters, config.cluster_cap, config.cap_factor, config.seed)
        summary.pop("labels", None)
        balancing.update(summary)
        keys = sorted(per_key)
        key_of_session = np.array([keys.index(key) for key, _ in names], dtype=np.int64)
        removed = np.bincount(key_of_session[session[~keep]], minlength=len(keys))
        for number, key in enumerate(keys):
            per_key[key]["balancing"] = int(removed[number])
        session, row = session[keep], row[keep]
    for key, counts in per_key.items():
        counts["kept"] = counts["input"] - counts["prefilter"] - counts["stationary"] - counts["balancing"]

    totals = _empty_counts()
    for counts in per_key.values():
        for name, value in counts.items():
            totals[name] += value
    all_velocities = np.concatenate(velocities) if velocities else np.zeros(0)
    quantiles = {f"p{q}": float(np.percentile(all_velocities, q)) for q in (1, 5, 10, 25, 50, 75, 90)} \
        if len(all_velocities) else {}
    meta = {
        "format": INDEX_FORMAT, "format_version": INDEX_VERSION,
        "created": _datetime.datetime.now(_datetime.timezone.utc).isoformat(timespec="seconds"),
        "sources": [str(path.resolve()) for path in paths],
        "parameters": {**asdict(config), "ignore_fields": list(config.ignore_fields)},
        "counts": totals, "per_key": dict(sorted(per_key.items())), "balancing": balancing,
        "velocity": {"zero_fraction": float((all_velocities == 0).mean()) if len(all_velocities) else 0.0,
                     **quantiles},
    }
    # keep only the sessions that still have rows, numbered in order
    used = np.unique(session)
    renumber = np.full(len(names), -1, dtype=np.int64)
    renumber[used] = np.arange(len(used))
    return CleanIndex([names[number] for number in used.tolist()], renumber[session], row, meta)


# --- the report -----------------------------------------------------------------------------------------


def format_report(meta: dict[str, Any]) -> str:
    """The per-stage table (and the per-checkpoint-key table) of a cleaned index's ``meta``."""
    parameters, counts, balancing = meta["parameters"], meta["counts"], meta["balancing"]
    total = max(counts["input"], 1)

    def line(label: str, removed: int | str, kept: int | str) -> str:
        removed_text = f"{removed:>10,}" if isinstance(removed, int) else f"{removed:>10}"
        share = f"{removed / total:>7.1%}" if isinstance(removed, int) else " " * 7
        kept_text = f"{kept:>10,}" if isinstance(kept, int) else f"{kept:>10}"
        return f"{label:<50}{removed_text}{share}{kept_text}"

    after_pre = counts["input"] - counts["prefilter"]
    after_stationary = after_pre - counts["stationary"]
    if balancing.get("enabled"):
        cap_source = "given" if parameters["cluster_cap"] is not None else \
            f"{parameters['cap_factor']:g} x median"
        balance_label = (f"3 balancing ({balancing['clusters']} clusters, cap {balancing['cap']} = {cap_source})")
    else:
        balance_label = "3 balancing (off: --no-balance)"
    lines = [
        f"{'stage':<50}{'removed':>10}{'':>7}{'kept':>10}",
        line(f"input ({counts['sessions']} sessions)", "", counts["input"]),
        line("1 pre-filter", counts["prefilter"], after_pre),
        line(f"    fewer than {parameters['min_pixels']} valid pixels", counts["few_pixels"], ""),
        line("    invalid state (mask all zero, NaN/inf)", counts["invalid_state"], ""),
        line("    game_mode not playing" + ("" if parameters["require_playing"] else " (off)"),
             counts["not_playing"], ""),
        line(f"2 stationary (velocity < {parameters['min_velocity']:g})", counts["stationary"], after_stationary),
        line(balance_label, counts["balancing"], counts["kept"]),
        line("kept", "", counts["kept"]),
    ]
    velocity = meta.get("velocity", {})
    if velocity.get("p50") is not None:
        lines.append("")
        lines.append(f"velocity of pre-filtered rows (state change per step, without {', '.join(parameters['ignore_fields'])}): "
                     f"{velocity['zero_fraction']:.1%} exactly 0; "
                     + ", ".join(f"{name} {velocity[name]:.3g}" for name in ("p5", "p10", "p25", "p50", "p75", "p90")))
    if balancing.get("enabled") and balancing.get("sizes"):
        sizes = np.array(balancing["sizes"])
        capped = int((sizes > balancing["cap"]).sum())
        lines.append(f"clusters ({balancing['algorithm']}): sizes min {sizes.min()}, median {np.median(sizes):g}, "
                     f"max {sizes.max()}; {capped} of {len(sizes)} capped to {balancing['cap']}")
    lines.append("")
    header = f"{'checkpoint key':<24}{'sessions':>9}{'input':>10}{'pre-filter':>11}{'stationary':>11}" \
             f"{'balancing':>10}{'kept':>10}{'kept %':>8}"
    lines.append(header)
    for key, row in meta["per_key"].items():
        lines.append(f"{key:<24}{row['sessions']:>9}{row['input']:>10,}{row['prefilter']:>11,}"
                     f"{row['stationary']:>11,}{row['balancing']:>10,}{row['kept']:>10,}"
                     f"{row['kept'] / max(row['input'], 1):>8.1%}")
    return "\n".join(lines)
