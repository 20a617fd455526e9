"""Sampling policies: from what has been seen so far, choose the next frame's N pixel coordinates.

Every policy implements ``sgaps_env.sampler.Sampler`` (``reset(seed) -> (N, 2)`` for the first frame,
``next_coords(observation, info) -> (N, 2)`` for the frame after ``observation``), so the recorder,
the environment and the offline evaluation take any of them. ``make_policy(name, count)`` builds
one by name:

| name | family | what it samples |
|---|---|---|
| `uniform_grid`, `checkerboard` | fixed | the same regular pattern every frame |
| `random`, `stratified` | fixed | a fresh uniform / jittered-grid draw every frame |
| `patch` | fixed | whole 16x16 patches at random (MAE-style), as many pixels as the budget |
| `importance` | adaptive | the SPT's importance map (0.4 MC dropout + 0.3 attention + 0.3 temporal error, see `models.importance`), tiered into critical / important / moderate / optional tiles, 60% of the budget by tier and 40% stratified, shifted by the predicted camera motion |
| `ram` | adaptive | the sprite boxes the state vector gives, moved to where the objects will be next frame, and the status-bar digits; the rest stratified |
| `learned` | learned | a stable-baselines3 policy trained by `experiments/train_sampler.py` on `SamplerLearningWrapper` (tile weights) |
| `oracle` | evaluation only | the pixels where the current reconstruction, moved by the camera, is furthest from the TRUE next frame: it reads the future, so it is an upper bound, not a policy |

**What goes down the wire.** Coordinates are not sent one by one: each policy (but the oracle)
describes its choice compactly in ``policy.description`` (a msgpack-able dict: a seed, a quantised
tier map, tile weights) and the client regenerates the exact same coordinates with
``coords_from_description(description, count, context)`` from that and what it knows itself (its own
state vectors). The policy computes its coordinates through the same function, so the two cannot
disagree. That function and everything it needs (``ClientContext``, the RAM-guided and tiered fills,
the tier packing) live in ``sgaps_env.descriptions``: a client regenerates coordinates without this
package. The oracle's description is ``None``: its coordinates must be sent explicitly.

**What a policy sees.** ``observation`` is the env's (``pixels``, ``state``, ``state_mask``) of the
frame just sampled; ``info`` may carry ``"reconstruction"`` (the server's reconstruction of it) and,
for the oracle only, ``"next_frame"`` (the true ``(H, W, 3)`` uint8 frame about to be sampled).
Policies draw from their own generator, seeded by ``reset(seed)``.

The mask-update scheduler (``MaskUpdateScheduler``, ``ScheduledPolicy``) decides on which frames a
policy chooses new coordinates; on the others the previous coordinates are reused and nothing needs
to be sent down (description ``{"k": "same"}``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sgaps_env.coords import FRAME_WIDTH, PATTERNS, RANDOM_PATTERNS, color_for, frame_values, pixel_to_uv
from sgaps_env.descriptions import (PATTERN_ORDER, SEED_LIMIT, ClientContext, HierarchyConfig, RamGuidedConfig,
                                    check_count, coords_from_description, pack_tiers, quantise_weights)
from sgaps_env.sampler import PatternSampler
from sgaps_env.sprites import camera_velocity
from sgaps_env.tiles import tile_edges

#: Every policy ``make_policy`` builds, in the order reports list them.
POLICY_NAMES = ("uniform_grid", "checkerboard", "random", "stratified", "patch", "importance", "ram", "learned",
                "oracle")
FAMILIES = {"uniform_grid": "fixed", "checkerboard": "fixed", "random": "fixed", "stratified": "fixed",
            "patch": "fixed", "importance": "adaptive", "ram": "adaptive", "learned": "learned",
            "oracle": "oracle (reads the true next frame)"}


def tier_map(importance: np.ndarray, config: HierarchyConfig) -> np.ndarray:
    """``(tiles, tiles)`` int tier (0 critical .. 3 optional) of each tile, by its mean importance."""
    row_edges, col_edges = tile_edges(config.tiles)
    means = np.add.reduceat(np.add.reduceat(importance, row_edges[:-1], axis=0), col_edges[:-1], axis=1)
    means = means / np.outer(np.diff(row_edges), np.diff(col_edges))
    order = np.argsort(-means.reshape(-1), kind="stable")
    bounds = np.round(np.cumsum(config.tier_area) * order.size).astype(int)
    tiers = np.empty(order.size, np.uint8)
    tiers[order] = np.searchsorted(bounds, np.arange(order.size), side="right")
    return np.minimum(tiers, 3).reshape(config.tiles, config.tiles)


# --- the policies ------------------------------------------------------------------------------------


class _DescribedPolicy:
    """Common machinery: a generator seeded by ``reset``, the client's context, and coordinates that
    always come out of :func:`coords_from_description`."""

    name = "policy"
    family = "fixed"
    needs_truth = False

    def __init__(self, count: int):
        self.count = check_count(count)
        self.description: dict[str, Any] | None = None
        self._rng = np.random.default_rng()
        self.reset(None)

    def _seed(self) -> int:
        return int(self._rng.integers(SEED_LIMIT))

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode: ``seed`` restarts the generator; None continues it (so a multi-episode
        rollout is fixed by its first seed, as with ``PatternSampler``)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.context = ClientContext()
        return self._emit(self._first_description())

    def _first_description(self) -> dict[str, Any]:
        return self._describe(None, {})

    def _emit(self, description: dict[str, Any]) -> np.ndarray:
        self.description = description
        return coords_from_description(description, self.count, self.context)

    def observe(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        """See a frame without choosing coordinates (the scheduler kept the previous ones)."""
        self.context.advance(observation["state"], observation["state_mask"])

    def next_coords(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        self.context.advance(observation["state"], observation["state_mask"])
        return self._emit(self._describe(observation, info))

    def _describe(self, observation, info) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(count={self.count})"


class FixedPolicy(_DescribedPolicy):
    """A fixed pattern of ``sgaps_env.coords.PATTERNS`` as ``sgaps_env.sampler.PatternSampler`` plays it
    (``random`` and ``stratified`` are redrawn every frame unless ``redraw=False``), described for the
    wire: the pattern's index and, for a random draw, the seed it is drawn with."""

    family = "fixed"

    def __init__(self, pattern: str, count: int, redraw: bool | None = None):
        self.sampler = PatternSampler(pattern, count, redraw)  # checks the pattern; owns whether it is redrawn
        self.pattern, self.name = pattern, pattern
        super().__init__(count)

    def reset(self, seed: int | None = None) -> np.ndarray:
        self._episode_seed = None
        return super().reset(seed)

    def _describe(self, observation, info) -> dict[str, Any]:
        description = {"k": "fixed", "p": PATTERN_ORDER.index(self.pattern)}
        if self.pattern in RANDOM_PATTERNS:
            if self._episode_seed is None or self.sampler.redraw:
                self._episode_seed = self._seed()
            description["s"] = self._episode_seed
        return description


class PatchPolicy(_DescribedPolicy):
    """MAE-style: whole 16x16 patches chosen at random every frame, as many pixels as the budget."""

    name, family = "patch", "fixed"

    def _describe(self, observation, info) -> dict[str, Any]:
        return {"k": "patch", "s": self._seed()}


class RamGuidedPolicy(_DescribedPolicy):
    """Spends the budget where the state vector says things move: see :func:`ram_guided_pixels`."""

    name, family = "ram", "adaptive"

    def __init__(self, count: int, config: RamGuidedConfig | None = None):
        self.config = config or RamGuidedConfig()
        super().__init__(count)

    def _describe(self, observation, info) -> dict[str, Any]:
        return {"k": "ram", "s": self._seed(), "c": self.config.to_description()}


class ImportancePolicy(_DescribedPolicy):
    """The seed's importance-based sampler on the SPT (``models.importance``), through the hierarchical
    budget and the 60/40 hybrid. The first frame of a session is stratified (nothing seen yet)."""

    name, family = "importance", "adaptive"

    def __init__(self, count: int, analyzer=None, config: HierarchyConfig | None = None):
        from models.importance import ImportanceAnalyzer

        self.analyzer = analyzer if analyzer is not None else ImportanceAnalyzer()
        self.config = config or HierarchyConfig()
        self.last_maps = None
        super().__init__(count)

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.analyzer.reset()
        self.last_maps = None
        return super().reset(seed)

    def _first_description(self) -> dict[str, Any]:
        return {"k": "fixed", "p": PATTERN_ORDER.index("stratified"), "s": self._seed()}

    def observe(self, observation, info) -> None:
        super().observe(observation, info)
        self.analyzer.observe(observation["pixels"], observation["state"], observation["state_mask"])

    def _describe(self, observation, info) -> dict[str, Any]:
        self.last_maps = self.analyzer.analyze(observation["pixels"], observation["state"], observation["state_mask"])
        config = self.config
        return {"k": "tiers", "s": self._seed(), "g": config.tiles,
                "t": pack_tiers(tier_map(self.last_maps.combined, config)),
                "c": [round(config.importance_share * 1000), *[round(b * 1000) for b in config.tier_budget]]}


class LearnedPolicy(_DescribedPolicy):
    """A stable-baselines3 policy trained by ``experiments/train_sampler.py``: it sees the cleaned
    observation (as ``SamplerLearningWrapper`` gives it) and outputs tile weights, sent as one byte
    each. The first frame is the uniform allocation, as in the wrapper."""

    name, family = "learned", "learned"

    def __init__(self, count: int, path: str | Path, deterministic: bool = True):
        from stable_baselines3 import PPO

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no sampler model at {path}: train one with `python experiments/train_sampler.py` "
                             "(it writes runs/sampler/final_model.zip)")
        self.path, self.deterministic = path, deterministic
        self.model = PPO.load(path, device="cpu")
        shape = self.model.action_space.shape
        self.tiles = int(round(np.sqrt(shape[0]))) if len(shape) == 1 else 0
        if self.tiles * self.tiles != (shape[0] if len(shape) == 1 else -1):
            raise ValueError(f"{path} outputs actions of shape {shape}, not K*K tile weights: it is not a sampler "
                             "trained on SamplerLearningWrapper")
        self.pixel_shape = tuple(self.model.observation_space["pixels"].shape)
        if self.pixel_shape[0] != count:
            raise ValueError(f"{path} was trained with {self.pixel_shape[0]} pixels per frame, not {count}: evaluate it "
                             f"at its own budget or train one with --sample-count {count}")
        super().__init__(count)

    def _first_description(self) -> dict[str, Any]:
        return {"k": "tiles", "w": bytes(self.tiles * self.tiles)}

    def _describe(self, observation, info) -> dict[str, Any]:
        from sgaps_env.wrappers import clean_observation

        action, _ = self.model.predict(clean_observation(observation), deterministic=self.deterministic)
        return {"k": "tiles", "w": quantise_weights(action)}


class OraclePolicy(_DescribedPolicy):
    """EVALUATION ONLY: samples the ``count`` pixels where the current reconstruction, shifted by the
    predicted camera scroll, differs most from the true next frame (``info["next_frame"]``) — so every
    sample lands on the largest remaining error. It reads the future; it is an upper bound for
    greedy error-driven sampling, not something a server could run. Its coordinates cannot be
    described: ``description`` is ``None`` and the wire carries them explicitly."""

    name, family, needs_truth = "oracle", "oracle (reads the true next frame)", True

    def _first_description(self) -> dict[str, Any]:
        return {"k": "fixed", "p": PATTERN_ORDER.index("stratified"), "s": self._seed()}

    def next_coords(self, observation, info) -> np.ndarray:
        from models.importance import shift_with_camera

        if "next_frame" not in info or "reconstruction" not in info:
            raise ValueError("the oracle reads the true next frame: pass info['next_frame'] (uint8 (H, W, 3)) and "
                             "info['reconstruction']; it runs in offline evaluation only (experiments/evaluate_policies.py)")
        previous = self.context.state
        self.context.advance(observation["state"], observation["state_mask"])
        scroll = camera_velocity(observation["state"], previous) if previous is not None else 0
        reconstruction = np.asarray(info["reconstruction"], np.float32)
        truth = frame_values(np.asarray(info["next_frame"]), color_for(reconstruction.shape[-1]))
        error = np.abs(shift_with_camera(reconstruction, scroll, fill=np.nan) - truth).sum(axis=2)
        error = np.nan_to_num(error, nan=3.0)
        # random tie-break, so that equal errors (e.g. all zero) are not taken in raster order
        order = np.lexsort((self._rng.random(error.size), -error.reshape(-1)))[:self.count]
        self.description = None
        return pixel_to_uv(order // FRAME_WIDTH, order % FRAME_WIDTH)


# --- the mask-update scheduler -----------------------------------------------------------------------


SCHEDULES = ("fixed", "interval", "quality", "adaptive")


@dataclass(frozen=True)
class MaskUpdateScheduler:
    """When a policy chooses new coordinates (the seed's mask-update strategies):

    | strategy | a new mask on frame t when |
    |---|---|
    | `fixed` | never after the first: the first frame's coordinates are kept |
    | `interval` | ``t % interval == 0`` |
    | `quality` | the last frame's quality ``metric`` fell below ``threshold`` |
    | `adaptive` | either of the two |
    """

    strategy: str = "interval"
    interval: int = 4
    threshold: float = 0.95
    metric: str = "ssim"

    def __post_init__(self):
        if self.strategy not in SCHEDULES:
            raise ValueError(f"unknown mask-update strategy {self.strategy!r}: expected one of {SCHEDULES}")
        if self.interval < 1:
            raise ValueError(f"interval must be >= 1 frame, got {self.interval}")

    def should_update(self, frame_index: int, quality: dict[str, float] | None = None) -> bool:
        if self.strategy == "fixed":
            return False
        on_interval = frame_index % self.interval == 0
        if self.strategy == "interval":
            return on_interval
        if quality is None or self.metric not in quality:
            raise ValueError(f"the {self.strategy!r} schedule needs the last frame's quality: pass "
                             f"info['quality'] = {{{self.metric!r}: value}}")
        poor = quality[self.metric] < self.threshold
        return poor if self.strategy == "quality" else (poor or on_interval)


class ScheduledPolicy:
    """A policy whose coordinates change only when ``scheduler`` says so; in between it still sees
    every frame (``observe``) and sends nothing new (``description == {"k": "same"}``). The frame index
    counts frames sampled since ``reset``; ``info["quality"]`` feeds quality-based schedules."""

    def __init__(self, policy, scheduler: MaskUpdateScheduler):
        self.policy, self.scheduler = policy, scheduler
        self.count, self.family, self.needs_truth = policy.count, policy.family, policy.needs_truth
        tag = {"fixed": "fixed", "interval": f"every{scheduler.interval}", "quality": f"{scheduler.metric}<{scheduler.threshold:g}",
               "adaptive": f"every{scheduler.interval}|{scheduler.metric}<{scheduler.threshold:g}"}[scheduler.strategy]
        self.name = f"{policy.name}@{tag}"
        self.description = None

    def reset(self, seed: int | None = None) -> np.ndarray:
        self._frame = 0
        self._coords = self.policy.reset(seed)
        self.description = self.policy.description
        return self._coords.copy()

    def next_coords(self, observation, info) -> np.ndarray:
        self._frame += 1
        if self.scheduler.should_update(self._frame, info.get("quality")):
            self._coords = self.policy.next_coords(observation, info)
            self.description = self.policy.description
        else:
            self.policy.observe(observation, info)
            self.description = {"k": "same"}
        return self._coords.copy()


# --- by name -------------------------------------------------------------------------------------


def make_policy(name: str, count: int, *, learned_path: str | Path | None = None,
                analyzer=None, ram_config: RamGuidedConfig | None = None):
    """The policy called ``name`` (one of ``POLICY_NAMES``) with a budget of ``count`` pixels.

    ``learned_path`` is the sampler ``.zip`` the ``learned`` policy loads; ``analyzer`` an
    ``models.importance.ImportanceAnalyzer`` for ``importance`` (a new one on the shipped SPT otherwise).
    """
    if name in PATTERNS:
        return FixedPolicy(name, count)
    if name == "patch":
        return PatchPolicy(count)
    if name == "ram":
        return RamGuidedPolicy(count, ram_config)
    if name == "importance":
        return ImportancePolicy(count, analyzer)
    if name == "learned":
        if learned_path is None:
            raise ValueError("the learned policy needs the model file: pass learned_path (the .zip "
                             "experiments/train_sampler.py writes, e.g. runs/sampler/final_model.zip)")
        return LearnedPolicy(count, learned_path)
    if name == "oracle":
        return OraclePolicy(count)
    raise ValueError(f"unknown sampling policy {name!r}: expected one of {POLICY_NAMES}")
