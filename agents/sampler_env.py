"""Learning where to sample, offline: a Gymnasium env that replays recorded sessions of worlds 1-4.

Each episode replays the first ``steps`` frames of a recorded session twice, side by side, each with its own
empty ``TileReconstructor`` (so the memory starts as on a level never seen): once sampled where the agent
says, once by the reference policy (the hand-made ``UncertaintyPolicy``). The agent sets the weights of
the next frame's ``blocks`` plan and how far ahead the camera is predicted (``agents.policies.LearnedPolicy`` is
the same thing at run time), and its reward is how much better its reconstruction of that frame is than the
reference's, in dB / 10: the signal is where it sampled, not how hard the scene is. Both draw their pixels
with the same seed, so equal weights give equal samples and a reward of exactly 0.

| space | shape | meaning |
|---|---|---|
| observation | ``Box(-1, 2, (PLAN_FEATURES,), float32)`` | ``agents.policies.plan_features``: the knowledge class of each block under the next screen (one-hot), the predicted sprite boxes' cover per block, the scroll and a few shares |
| action | ``Box(-1, 1, (SAMPLER_ACTIONS,), float32)`` | the plan's weights, ``base_weights`` each times ``64 ** a`` (per knowledge class, sprite boxes, status bar), then the camera's lookahead, ``1 + 2 a`` frames (``action_to_plan``). With the default base, zeros are the reference itself |

**Reward**: ``(PSNR(agent's reconstruction) - PSNR(reference's) - action_penalty * |a|^2) / reward_scale`` of each
frame after the first, where ``a`` are the action's weight corrections: the penalty (dB per unit, 0 by default) keeps
the agent near the reference wherever a correction does not pay for itself. ``info["gain_db"]`` is the gain without
the penalty; on the last step, ``info["episode_gain_db"]`` is its mean over the episode.
**Episode end**: truncated after ``steps`` frames or at the session's end; never terminated.
**Data**: sessions of worlds 1-4 with frames (a session of worlds 5-8 is refused: they are held out). Each
world's sessions may be reconstructed with a codebook that never saw that world (``codebooks``), so that the
agent learns on levels whose blocks the codebook does not know, as on worlds 5-8. A world given several
codebooks draws one per episode: the same level then looks more or less familiar, and the agent learns to read
how unfamiliar it is from the observation (``TileReconstructor.novelty``) rather than from which level it is.

The reference's PSNR of a (session, codebook, seed) is computed once and cached: it does not depend on the agent.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agents.policies import (PLAN_FEATURES, SAMPLER_ACTIONS, UNCERTAINTY_WEIGHTS, UncertaintyPolicy, action_to_plan,
                             action_to_weights, clip_action, plan_features)
from models.metrics import psnr
from models.tile_reconstructor import TileReconstructor, TileCodebook
from sgaps_env.coords import extract_pixels, frame_values
from sgaps_env.descriptions import BLOCK_WEIGHTS
from sgaps_env.session_file import RecordedSession
from sgaps_env.worlds import check_training_sessions, session_world

#: Seeds an episode's draws take (few, so the reference's scores are computed once each).
EPISODE_SEEDS = 4


class SamplerReplayEnv(gym.Env):
    """See the module docstring.

    | argument | default | meaning |
    |---|---|---|
    | ``sessions`` | | recorded sessions of worlds 1-4 with frames (``list_sessions``) |
    | ``codebooks`` | | ``{world: TileCodebook or [TileCodebook, ...]}``: the codebook(s) reconstructing each world's sessions, one drawn per episode; every session's world needs one |
    | ``count`` | 500 | pixels per frame |
    | ``steps`` | 100 | frames per episode, from the session's start |
    | ``reward_scale`` | 10 | dB per unit of reward |
    | ``base_weights`` | ``UNCERTAINTY_WEIGHTS`` | the weights an action of zeros gives (``action_to_weights``): the reference's own, or e.g. all 255 to learn from a uniform start |
    | ``action_penalty`` | 0 | dB taken off each frame's reward per unit of the squared weight corrections (summed) |
    """

    metadata = {"render_modes": []}

    def __init__(self, sessions: list[RecordedSession], codebooks: dict[int, TileCodebook | list[TileCodebook]],
                 count: int = 500, steps: int = 100, reward_scale: float = 10.0,
                 base_weights: tuple[int, ...] = UNCERTAINTY_WEIGHTS, action_penalty: float = 0.0):
        if not sessions:
            raise ValueError("SamplerReplayEnv needs recorded sessions of worlds 1-4 with frames: record some with "
                             "agents/collect.py --store-frames --stages train-worlds")
        if steps < 2 or reward_scale <= 0 or not 0.0 <= action_penalty < float("inf"):
            raise ValueError(f"steps must be >= 2 frames, reward_scale > 0 and action_penalty a finite dB >= 0, got "
                             f"{steps}, {reward_scale} and {action_penalty}")
        check_training_sessions(sessions, slice(0, steps))
        without_frames = [s.name for s in sessions if not s.has_frames]
        if without_frames:
            raise ValueError(f"sessions {without_frames[:3]} hold no true frames to score against: record with "
                             "--store-frames")
        self.sessions = list(sessions)
        self.worlds = [session_world(s) for s in self.sessions]
        missing = sorted(set(self.worlds) - set(codebooks))
        if missing:
            raise ValueError(f"no codebook for world(s) {missing}: pass codebooks={{world: codebook}} for every "
                             "world of the sessions")
        self.codebooks = {world: list(books) if isinstance(books, (list, tuple)) else [books]
                          for world, books in codebooks.items()}
        empty = sorted(world for world, books in self.codebooks.items() if not books)
        if empty:
            raise ValueError(f"an empty list of codebooks for world(s) {empty}: give each world at least one")
        self.count, self.steps, self.reward_scale, self.action_penalty = count, steps, reward_scale, action_penalty
        self.base_weights = tuple(base_weights)
        action_to_weights(np.zeros(BLOCK_WEIGHTS), self.base_weights)  # checks them
        self.observation_space = spaces.Box(-1.0, 2.0, (PLAN_FEATURES,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (SAMPLER_ACTIONS,), np.float32)
        self._reference_cache: dict[tuple[int, int, int], np.ndarray] = {}

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = slice(0, self.steps)
        session = self.sessions[index]
        return session.frames(rows), *session.states(rows)

    def _reference_scores(self, index: int, book: int, seed: int) -> np.ndarray:
        key = (index, book, seed)
        if key not in self._reference_cache:
            reconstructor = TileReconstructor(self.codebooks[self.worlds[index]][book])
            policy = UncertaintyPolicy(self.count, reconstructor)
            coords = policy.reset(seed)
            scores = []
            for frame, state, mask in zip(self._frames, self._states, self._masks):
                pixels = extract_pixels(frame, coords, "rgb")
                reconstruction = reconstructor.reconstruct(pixels, state, mask)
                scores.append(psnr(reconstruction, frame_values(frame, "rgb")))
                coords = policy.next_coords({"pixels": pixels, "state": state, "state_mask": mask}, {})
            self._reference_cache[key] = np.asarray(scores)
        return self._reference_cache[key]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._index = int(self.np_random.integers(len(self.sessions)))
        books = self.codebooks[self.worlds[self._index]]
        self._book = int(self.np_random.integers(len(books)))
        self._seed = int(self.np_random.integers(EPISODE_SEEDS))
        self._frames, self._states, self._masks = self._load(self._index)
        self._reference = self._reference_scores(self._index, self._book, self._seed)
        self._reconstructor = TileReconstructor(books[self._book])
        self._policy = UncertaintyPolicy(self.count, self._reconstructor, self.base_weights)
        self._coords = self._policy.reset(self._seed)  # the first frame: nothing known yet
        self._step = 0
        self._gains: list[float] = []
        self._score = self._sample_and_score()
        return self._features(), {"psnr": self._score, "reference_psnr": float(self._reference[0])}

    def _sample_and_score(self) -> float:
        frame, state, mask = self._frames[self._step], self._states[self._step], self._masks[self._step]
        self._pixels = extract_pixels(frame, self._coords, "rgb")
        reconstruction = self._reconstructor.reconstruct(self._pixels, state, mask)
        return psnr(reconstruction, frame_values(frame, "rgb"))

    def _features(self) -> np.ndarray:
        state, mask = self._states[self._step], self._masks[self._step]
        previous = (self._states[self._step - 1], self._masks[self._step - 1]) if self._step else (None, None)
        return plan_features(self._reconstructor, state, mask, *previous)

    def step(self, action):
        self._policy.weights, self._policy.lookahead = action_to_plan(action, self.base_weights)
        corrections = clip_action(action)[:BLOCK_WEIGHTS]
        observation = {"pixels": self._pixels, "state": self._states[self._step], "state_mask": self._masks[self._step]}
        self._coords = self._policy.next_coords(observation, {})
        self._step += 1
        self._score = self._sample_and_score()
        gain = self._score - float(self._reference[self._step])
        self._gains.append(gain)
        truncated = self._step + 1 >= len(self._frames)
        info = {"psnr": self._score, "reference_psnr": float(self._reference[self._step]), "gain_db": gain,
                "weights": self._policy.weights, "lookahead": self._policy.lookahead}
        if truncated:
            info["episode_gain_db"] = float(np.mean(self._gains))
        reward = (gain - self.action_penalty * float(corrections @ corrections)) / self.reward_scale
        return self._features(), reward, False, truncated, info
