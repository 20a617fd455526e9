"""The one play loop: an environment, a player on the buttons and a sampler on the coordinates.

Everything that plays ``SGAPS-SMB-v0`` (the recorder, the demo, player evaluation, the benchmarks,
live policy runs) iterates :class:`Rollout` instead of writing its own ``reset``/``step`` loop::

    rollout = Rollout(env, player, sampler, seed=0, max_steps=1000)
    for step in rollout:                 # step 0 is the reset observation
        step.info["reconstruction"] = reconstructor.reconstruct(...)   # the player and sampler see it
    rollout.summary                      # steps, furthest x, flag, how the episode ended

Each :class:`Step` is yielded *before* the player and the sampler act on it, so a consumer can add
entries to ``step.info`` (a reconstruction, a measured quality) that they read. The player, the
sampler and the environment are all reset with ``seed`` (the sampler draws from its own generator,
so a seed plays the same game whatever samples it). With ``episodes > 1`` the rollout goes on with
the next episode when one ends, the env reset without a seed (its generator continues, so the whole
run is fixed by ``seed``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from sgaps_env.player import Player, as_player
from sgaps_env.sampler import Sampler


@dataclass
class Step:
    """One observation of a rollout and what produced it."""

    episode: int
    """0-based episode number within the rollout"""
    step: int
    """steps since this episode's reset (0 is the reset observation)"""
    observation: dict[str, np.ndarray]
    info: dict[str, Any]
    buttons: int | None = None
    """button index of the step that produced this observation (None for the reset row)"""
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    """the env truncated, or ``max_steps`` was reached"""

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


@dataclass
class EpisodeSummary:
    """How one episode of a rollout went."""

    episode: int
    steps: int = 0
    furthest_x: int = 0
    flag_get: bool = False
    terminated: bool = False
    truncated: bool = False
    emulated_frames: int = 0
    final_world: int = 0
    final_stage: int = 0

    def record(self, step: Step) -> None:
        info = step.info
        self.steps = step.step
        self.furthest_x = max(self.furthest_x, int(info.get("x_pos", 0)))
        self.flag_get = self.flag_get or bool(info.get("flag_get", False))
        self.terminated, self.truncated = step.terminated, step.truncated
        self.emulated_frames = int(info.get("frame_index", 0))
        self.final_world, self.final_stage = int(info.get("world", 0)), int(info.get("stage", 0))


@dataclass
class Rollout:
    """Iterate the steps of ``episodes`` episodes of ``env`` played by ``player`` and sampled by ``sampler``.

    ``max_steps`` cuts an episode off (marked truncated); ``total_steps`` stops the whole rollout
    after that many steps, counted over episodes (reset rows not included), whatever ``episodes`` says.
    """

    env: Any
    player: Player
    sampler: Sampler
    seed: int | None = None
    max_steps: int | None = None
    episodes: int = 1
    total_steps: int | None = None
    summaries: list[EpisodeSummary] = field(default_factory=list)

    def __post_init__(self):
        self.player = as_player(self.player)
        for name, value in (("max_steps", self.max_steps), ("total_steps", self.total_steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if isinstance(self.episodes, bool) or not isinstance(self.episodes, (int, np.integer)) or self.episodes < 1:
            raise ValueError(f"episodes must be a positive integer, got {self.episodes!r}")
        if not (callable(getattr(self.sampler, "reset", None)) and callable(getattr(self.sampler, "next_coords", None))):
            raise ValueError(f"sampler must implement sgaps_env.sampler.Sampler (reset(seed), next_coords(observation, "
                             f"info)), got {self.sampler!r}: e.g. sgaps_env.sampler.PatternSampler('random', 500)")

    @property
    def summary(self) -> EpisodeSummary:
        """The current (or last) episode's summary."""
        if not self.summaries:
            raise ValueError("the rollout has not started: iterate it first")
        return self.summaries[-1]

    @property
    def steps_played(self) -> int:
        return sum(summary.steps for summary in self.summaries)

    def __iter__(self) -> Iterator[Step]:
        played = 0
        self.summaries = []  # iterating again plays the rollout afresh from its seed
        for episode in range(self.episodes):
            seed = self.seed if episode == 0 else None
            coords = self.sampler.reset(seed)
            self.player.reset(seed)
            observation, info = self.env.reset(seed=seed, options={"coords": coords})
            summary = EpisodeSummary(episode)
            self.summaries.append(summary)
            current = Step(episode, 0, observation, info)
            summary.record(current)
            yield current
            step = 0
            while not current.done:
                if self.total_steps is not None and played >= self.total_steps:
                    return
                buttons = int(self.player.act(current.observation, current.info))
                coords = self.sampler.next_coords(current.observation, current.info)
                observation, reward, terminated, truncated, info = self.env.step({"buttons": buttons, "coords": coords})
                step += 1
                played += 1
                cut = self.max_steps is not None and step >= self.max_steps and not terminated
                current = Step(episode, step, observation, info, buttons, float(reward), bool(terminated),
                               bool(truncated) or cut)
                summary.record(current)
                yield current
            if self.total_steps is not None and played >= self.total_steps:
                return
