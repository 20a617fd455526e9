"""Learning where to sample, offline: a Gymnasium env that replays recorded sessions of worlds 1-4.

Each episode replays the first ``steps`` frames of a recorded session twice, side by side, each with its own
empty ``TileReconstructor`` (so the memory starts as on a level never seen): once sampled where the agent
says, once by the reference policy (the hand-made ``UncertaintyPolicy``). The agent sets the weights of
the next frame's ``blocks`` plan (``agents.policies.LearnedPolicy`` is the same thing at run time), and its
reward is how much better its reconstruction of that frame is than the reference's, in dB / 10: the signal
is where it sampled, not how hard the scene is. Both draw their pixels with the same seed, so equal weights
give equal samples and a reward of exactly 0.

| space | shape | meaning |
|---|---|---|
| observation | ``Box(-1, 2, (PLAN_FEATURES,), float32)`` | ``agents.policies.plan_features``: the knowledge class of each block under the next screen (one-hot), the predicted sprite boxes' cover per block, the scroll and a few shares |
| action | ``Box(-1, 1, (BLOCK_WEIGHTS,), float32)`` | the plan's weights, ``base_weights`` each times ``64 ** a`` (``action_to_weights``): per knowledge class, sprite boxes, status bar. With the default base, zeros are the reference itself |

**Reward**: ``(PSNR(agent's reconstruction) - PSNR(reference's)) / reward_scale`` of each frame after the first.
**Episode end**: truncated after ``steps`` frames or at the session's end; never terminated.
**Data**: sessions of worlds 1-4 with frames (a session of worlds 5-8 is refused: they are held out). Each
world's sessions may be reconstructed with a codebook that never saw that world (``codebooks``), so that the
agent learns on levels whose blocks the codebook does not know, as on worlds 5-8.

The reference's PSNR of a (session, seed) is computed once and cached: it does not depend on the agent.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agents.policies import PLAN_FEATURES, UNCERTAINTY_WEIGHTS, UncertaintyPolicy, action_to_weights, plan_features
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
    | ``codebooks`` | | ``{world: TileCodebook}``: the codebook reconstructing each world's sessions; every session's world needs one |
    | ``count`` | 500 | pixels per frame |
    | ``steps`` | 100 | frames per episode, from the session's start |
    | ``reward_scale`` | 10 | dB per unit of reward |
    | ``base_weights`` | ``UNCERTAINTY_WEIGHTS`` | the weights an action of zeros gives (``action_to_weights``): the reference's own, or e.g. all 255 to learn from a uniform start |
    """

    metadata = {"render_modes": []}

    def __init__(self, sessions: list[RecordedSession], codebooks: dict[int, TileCodebook], count: int = 500,
                 steps: int = 100, reward_scale: float = 10.0, base_weights: tuple[int, ...] = UNCERTAINTY_WEIGHTS):
        if not sessions:
            raise ValueError("SamplerReplayEnv needs recorded sessions of worlds 1-4 with frames: record some with "
                             "agents/collect.py --store-frames --stages train-worlds")
        if steps < 2 or reward_scale <= 0:
            raise ValueError(f"steps must be >= 2 frames and reward_scale > 0, got {steps} and {reward_scale}")
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
        self.codebooks, self.count, self.steps, self.reward_scale = codebooks, count, steps, reward_scale
        self.base_weights = tuple(base_weights)
        action_to_weights(np.zeros(BLOCK_WEIGHTS), self.base_weights)  # checks them
        self.observation_space = spaces.Box(-1.0, 2.0, (PLAN_FEATURES,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (BLOCK_WEIGHTS,), np.float32)
        self._reference_cache: dict[tuple[int, int], np.ndarray] = {}

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = slice(0, self.steps)
        session = self.sessions[index]
        return session.frames(rows), *session.states(rows)

    def _reference_scores(self, index: int, seed: int) -> np.ndarray:
        key = (index, seed)
        if key not in self._reference_cache:
            reconstructor = TileReconstructor(self.codebooks[self.worlds[index]])
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
        self._seed = int(self.np_random.integers(EPISODE_SEEDS))
        self._frames, self._states, self._masks = self._load(self._index)
        self._reference = self._reference_scores(self._index, self._seed)
        self._reconstructor = TileReconstructor(self.codebooks[self.worlds[self._index]])
        self._policy = UncertaintyPolicy(self.count, self._reconstructor, self.base_weights)
        self._coords = self._policy.reset(self._seed)  # the first frame: nothing known yet
        self._step = 0
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
        self._policy.weights = action_to_weights(action, self.base_weights)
        observation = {"pixels": self._pixels, "state": self._states[self._step], "state_mask": self._masks[self._step]}
        self._coords = self._policy.next_coords(observation, {})
        self._step += 1
        self._score = self._sample_and_score()
        gain = self._score - float(self._reference[self._step])
        truncated = self._step + 1 >= len(self._frames)
        info = {"psnr": self._score, "reference_psnr": float(self._reference[self._step]), "gain_db": gain,
                "weights": self._policy.weights}
        return self._features(), gain / self.reward_scale, False, truncated, info
