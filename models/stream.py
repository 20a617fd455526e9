"""Training data for the SPT: recorded sessions replayed in order through a temporal memory.

The SPT's inputs depend on the session so far (the memory), so frames cannot be drawn independently
the way :class:`models.dataset.SessionDataset` draws them. :class:`ReconstructionStream` walks
sessions from start to end, several at once, re-samples every frame's pixels from the true frame
(a random budget and pattern per stretch of steps), builds the model inputs from the memory
before the frame, updates the memory with the samples, and yields consecutive pairs of frames
(for the temporal loss) through a shuffle buffer. Each DataLoader worker walks its own sessions.

    stream = ReconstructionStream(["data/train.h5"], priors, StreamConfig(budget=(400, 600)))
    loader = DataLoader(stream, batch_size=None, num_workers=1)
    for batch in loader: ...   # batch["inputs"] for the model, batch["target"] (2B, C, H, W), pairs adjacent
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from models.memory import MemoryBank, MemoryConfig, StagePriors
from models.spt import collate_inputs, frame_inputs
from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, color_for, frame_values, make_pattern, uv_to_pixel
from sgaps_env.session_file import RecordedSession, list_sessions


@dataclass
class StreamConfig:
    """How frames are sampled and batched for training."""

    budget: tuple[int, int] = (400, 600)
    """pixels per frame, drawn uniformly in [low, high] for every stretch of ``stretch`` steps"""
    patterns: dict[str, float] = field(default_factory=lambda: {"random": 0.7, "stratified": 0.2,
                                                                 "uniform_grid": 0.05, "checkerboard": 0.05})
    """sampling patterns and their probabilities (one per stretch)"""
    stretch: int = 64
    drop_max: float = 0.25
    """masked sparse modeling: up to this share of a frame's pixels is hidden from the model (not from the memory)"""
    pairs_per_batch: int = 4
    concurrent_sessions: int = 8
    shuffle_buffer: int = 256
    chunk: int = 128
    """frames read from a session file at a time"""
    channels: int = 3
    split: str | None = "train"
    seed: int = 0
    epoch: int = 0
    pairs_per_epoch: int = 2000
    """pairs yielded per epoch, over all workers"""


class _SessionWalker:
    """One session replayed step by step with its own memory and sampling state."""

    def __init__(self, session: RecordedSession, rng: np.random.Generator, priors: StagePriors,
                 memory_config: MemoryConfig, config: StreamConfig):
        self.session, self.rng, self.config = session, rng, config
        self.color = color_for(config.channels)
        self.memory = MemoryBank(config.channels, priors, memory_config)
        self.states, self.masks = session.states()
        self.length = len(self.states)
        self.step, self.frames, self.frames_from = 0, None, 0
        self.previous = None
        self.count, self.pattern = 0, "random"

    def _frame(self, step: int) -> np.ndarray:
        """Frame ``step`` as stored: ``(H, W, 3)`` uint8 RGB."""
        if self.frames is None or not self.frames_from <= step < self.frames_from + len(self.frames):
            self.frames = self.session.frames(slice(step, step + self.config.chunk))
            self.frames_from = step
        return self.frames[step - self.frames_from]

    def next_pair(self) -> tuple[dict, np.ndarray, dict, np.ndarray] | None:
        """``(inputs_{t-1}, frame_{t-1}, inputs_t, frame_t)`` or None at the session's end."""
        while self.step < self.length:
            if self.step % self.config.stretch == 0:
                low, high = self.config.budget
                self.count = int(self.rng.integers(low, high + 1))
                names = list(self.config.patterns)
                weights = np.array([self.config.patterns[n] for n in names], float)
                self.pattern = names[self.rng.choice(len(names), p=weights / weights.sum())]
            frame = self._frame(self.step)
            truth = frame_values(frame, self.color)
            rows, cols = uv_to_pixel(make_pattern(self.pattern, self.count, self.rng), FRAME_HEIGHT, FRAME_WIDTH)
            values = truth[rows, cols]
            state, mask = self.states[self.step], self.masks[self.step]
            inputs = frame_inputs(self.memory, rows, cols, values, state, mask)
            self.memory.update(rows, cols, values, state, mask)
            self.step += 1
            # the uint8 frame keeps the shuffle buffer small; collate() converts it with frame_values again
            current = (inputs, frame)
            previous, self.previous = self.previous, current
            if previous is not None:
                return (*previous, *current)
        return None


class ReconstructionStream(IterableDataset):
    """Batches of consecutive frame pairs with memory-aware SPT inputs; see the module docstring."""

    def __init__(self, paths, priors: StagePriors, config: StreamConfig, memory_config: MemoryConfig | None = None):
        if config.channels not in (1, 3):
            raise ValueError(f"StreamConfig.channels must be 1 (luma) or 3 (RGB), got {config.channels!r}")
        self.sessions = list_sessions(paths, config.split, need_frames=True)
        if not self.sessions:
            raise ValueError(f"no session of split {config.split!r} in {paths}: record more with "
                             "`python agents/collect.py` (sessions fall into train/val/test about 80/10/10 by a hash "
                             "of their id), or set StreamConfig.split=None to train on every session")
        self.priors, self.config = priors, config
        self.memory_config = memory_config or MemoryConfig()

    def __iter__(self):
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        config = self.config
        rng = np.random.default_rng([config.seed, config.epoch, worker_id])
        mine = [s for i, s in enumerate(self.sessions) if i % workers == worker_id] or self.sessions
        order = list(rng.permutation(len(mine)))
        walkers: list[_SessionWalker] = []
        buffer: list[tuple] = []
        quota = -(-config.pairs_per_epoch // workers)
        produced = 0
        while produced < quota:
            while len(walkers) < config.concurrent_sessions:
                if not order:
                    order = list(rng.permutation(len(mine)))
                walkers.append(_SessionWalker(mine[order.pop()], np.random.default_rng(rng.integers(2 ** 63)),
                                              self.priors, self.memory_config, config))
            walker = walkers[int(rng.integers(len(walkers)))]
            pair = walker.next_pair()
            if pair is None:
                walkers.remove(walker)
                continue
            buffer.append(pair)
            if len(buffer) < config.shuffle_buffer and produced + len(buffer) < quota:
                continue
            while len(buffer) >= config.pairs_per_batch and produced < quota:
                chosen = [buffer.pop(int(rng.integers(len(buffer)))) for _ in range(config.pairs_per_batch)]
                produced += len(chosen)
                yield self.collate(chosen, rng)
                if len(buffer) < config.shuffle_buffer // 2:
                    break

    def collate(self, pairs: list[tuple], rng: np.random.Generator) -> dict:
        """Frames of ``pairs`` in order ``(a_{t-1}, a_t, b_{t-1}, b_t, ...)``, all with one pixel count: the
        smallest in the batch, less a random share up to ``drop_max`` (masked sparse modeling)."""
        items, targets = [], []
        for previous_inputs, previous_frame, inputs, frame in pairs:
            items += [previous_inputs, inputs]
            targets += [previous_frame, frame]
        fewest = min(len(item["token_xy"]) for item in items)
        keep = max(1, int(round(fewest * (1.0 - rng.uniform(0.0, self.config.drop_max)))))
        trimmed = []
        for item in items:
            chosen = rng.choice(len(item["token_xy"]), size=keep, replace=False)
            trimmed.append({**item, "token_xy": item["token_xy"][chosen], "token_values": item["token_values"][chosen]})
        target = frame_values(np.stack(targets), color_for(self.config.channels))
        target = torch.from_numpy(target).permute(0, 3, 1, 2).contiguous()
        return {"inputs": collate_inputs(trimmed), "target": target, "count": keep}
