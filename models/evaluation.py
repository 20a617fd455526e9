"""Replaying recorded sessions through reconstructors: the frames' pixels are re-sampled from the true
frames with a pattern and budget, every reconstructor sees the same pixels in session order, and each
frame is scored against the truth.

    from models.evaluation import evaluate_sessions
    rows = evaluate_sessions(["data/heldout.h5"], {"spt": SPTReconstructor(), "hold": make_baseline("hold")},
                             budget=500, color="rgb")
"""
from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from models.metrics import foreground_psnr, psnr, ssim
from sgaps_env.coords import extract_pixels, frame_values, make_pattern
from sgaps_env.session_file import read_sessions
from sgaps_env.worlds import session_world


def evaluate_sessions(paths, reconstructors: dict, budget: int = 500, pattern: str = "random", color: str = "rgb",
                      split: str | None = None, max_steps: int | None = None, max_sessions: int | None = None,
                      seed: int = 0, with_ssim: bool = True, score_every: int = 1, progress: bool = True,
                      worlds: tuple[int, ...] | None = None) -> list[dict]:
    """One row per (session, scored step, reconstructor): psnr, ssim, foreground_psnr (nan without sprites), ms.

    ``worlds``: only sessions that start in those worlds (1-based); None for all.

    Steps ``0, score_every, 2 * score_every, ...`` are scored. Reconstructors with ``stateful = False``
    run on those steps only; the others (a memory of the session) run on every step.
    """
    results = []
    rows = slice(0, max_steps)
    for session in tqdm(read_sessions(paths, split, max_sessions), desc=f"sessions @{budget}px", unit="session",
                        disable=not progress, total=max_sessions):
        if worlds is not None and session_world(session) not in worlds:
            continue
        key, session_id = session.checkpoint_key, session.session_id
        frames = session.frames(rows)
        states, masks = session.states(rows)
        # the seed of published figures: session_seed(key, id, seed, budget)
        rng = np.random.default_rng(session.seed(seed, budget))
        for reconstructor in reconstructors.values():
            reconstructor.reset()
        for step, (frame, state, mask) in enumerate(zip(frames, states, masks)):
            coords = make_pattern(pattern, budget, rng)
            pixels = extract_pixels(frame, coords, color)
            truth = frame_values(frame, color)
            scored = step % score_every == 0
            for name, reconstructor in reconstructors.items():
                if not scored and not getattr(reconstructor, "stateful", True):
                    continue
                start = time.perf_counter()
                output = reconstructor.reconstruct(pixels, state, mask)
                elapsed = (time.perf_counter() - start) * 1000.0
                if not scored:
                    continue
                results.append({"checkpoint_key": key, "session": session_id, "step": step, "reconstructor": name,
                                "budget": budget, "psnr": psnr(output, truth),
                                "ssim": ssim(output, truth) if with_ssim else float("nan"),
                                "foreground_psnr": foreground_psnr(output, truth, state, mask), "ms": elapsed})
    return results


#: The columns :func:`evaluate_sessions` scores.
METRICS = ("psnr", "ssim", "foreground_psnr", "ms")


def summarize(rows: list[dict], keys: tuple[str, ...] = ("reconstructor", "budget"),
              metrics: tuple[str, ...] = METRICS) -> list[dict]:
    """Mean of each of ``metrics`` per group, ignoring NaN (foreground PSNR: frames with sprites only)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    summary = []
    for group_key, members in groups.items():
        entry = dict(zip(keys, group_key))
        entry["frames"] = len(members)
        for metric in metrics:
            values = np.array([m[metric] for m in members], float)
            entry[metric] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        summary.append(entry)
    return summary
