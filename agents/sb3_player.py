"""A player that presses the buttons a trained stable-baselines3 PPO policy chooses.

``SB3Player("runs/player/<run>/best_model.zip")`` implements ``sgaps_env.player.Player``
(``reset(seed)``, ``act(observation, info) -> int``). It takes the observation of the env itself
(``SGAPS-SMB-v0``, sentinels included) or of ``PlayerLearningWrapper`` (already cleaned), applies the
wrapper's cleaning (masked ``state`` entries -> 0) and returns the policy's button index.

What the policy was trained on matters:

* **Shapes.** The model only accepts the pixel shape it was trained with, ``(sample_count, 2 + C)``
  (``C`` = 1 gray, 3 rgb), and the same state length; ``act`` and ``check_env`` raise a ``ValueError``
  that says which env options to use otherwise.
* **The sampling pattern.** The policy was trained with ``PlayerLearningWrapper``'s fixed pattern
  (``env_config["pattern"]``, e.g. ``"uniform_grid"``): each input position always held the same
  pixel of the screen. An env that samples elsewhere (another pattern, a learned sampler) shows it
  inputs it never saw, and it plays worse or not at all. So a recording env must sample every
  frame with that same pattern, e.g. ``coords = sgaps_env.make_pattern(player.env_config["pattern"],
  sample_count)`` for the fixed patterns ``uniform_grid`` and ``checkerboard`` (first frame too:
  ``reset(options={"coords": coords})``). ``act`` warns once when the observation's pixel positions
  differ from the training pattern (``check_pattern=False`` silences it).
* **The button set.** The returned index is in the training button set (``env_config["buttons"]``);
  ``check_env`` checks that the env's set has as many buttons.

Models saved by ``agents/train_player.py`` carry that env config (``model.sgaps_env_config``:
stage, sample_count, color, frame_skip, buttons, pattern, ...); ``player.env_config`` is it, or
``None`` for a model saved elsewhere (then only the shapes are checked).
"""
from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO

from sgaps_env.coords import PATTERNS, make_pattern, pixel_to_uv, uv_to_pixel
from sgaps_env.coords import RANDOM_PATTERNS
from sgaps_env.wrappers import PlayerLearningWrapper

#: The model attribute (saved inside the .zip) that holds the env config of its training.
ENV_CONFIG_ATTRIBUTE = "sgaps_env_config"

_OBSERVATION_KEYS = {"pixels", "state", "state_mask"}


def _pixel_options(shape: tuple[int, ...]) -> str:
    """'sample_count=256, color='gray'' for a pixels shape (N, 2 + C)."""
    count, width = shape
    color = {3: "'gray'", 5: "'rgb'"}.get(width, f"<{width - 2} channels?>")
    return f"sample_count={count}, color={color}"


class SB3Player:
    """Plays with a saved stable-baselines3 PPO policy trained on ``PlayerLearningWrapper`` observations.

    Args:
        path: the model ``.zip`` (e.g. ``final_model.zip``, ``best_model.zip`` or a checkpoint of
            ``agents/train_player.py``), loaded with ``PPO.load(path, device="cpu")``.
        deterministic: take the most probable button (default); ``False`` samples from the policy with
            a generator seeded by ``reset(seed)``.
        check_pattern: warn once when an observation's pixel positions are not the training pattern's.

    Attributes: ``model`` (the PPO), ``pixel_shape`` and ``state_dim`` it expects, ``num_buttons``,
    ``env_config`` (the training env config, or ``None``).

    Raises ``ValueError`` when the file is missing or its model does not take SGAPS observations
    (a ``Dict`` of pixels, state and state_mask) or choose a ``Discrete`` button.
    """

    name = "sb3"

    def __init__(self, path: str | Path, deterministic: bool = True, check_pattern: bool = True):
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no model file {path}: expected a .zip saved by stable-baselines3 "
                             "(e.g. runs/player/<run>/best_model.zip from agents/train_player.py)")
        self.path = path
        self.model = PPO.load(path, device="cpu")
        self.model.policy.set_training_mode(False)
        observation_space, action_space = self.model.observation_space, self.model.action_space
        if not (isinstance(observation_space, spaces.Dict) and set(observation_space.spaces) == _OBSERVATION_KEYS):
            raise ValueError(f"{path} was trained on observations {observation_space}, not SGAPS-SMB-v0's "
                             "Dict(pixels, state, state_mask): train it with agents/train_player.py")
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"{path} chooses actions in {action_space}, not a Discrete button index: it is not a "
                             "player (train one with agents/train_player.py)")
        self.pixel_shape: tuple[int, int] = tuple(observation_space["pixels"].shape)
        self.state_dim: int = int(observation_space["state"].shape[0])
        self.num_buttons: int = int(action_space.n)
        self.deterministic = bool(deterministic)
        self.check_pattern = bool(check_pattern)
        config = getattr(self.model, ENV_CONFIG_ATTRIBUTE, None)
        self.env_config: dict[str, Any] | None = dict(config) if isinstance(config, dict) else None
        self._expected_uv = self._pattern_centres()
        self._pattern_warned = False
        self._rng = np.random.default_rng()

    @staticmethod
    def read_env_config(path: str | Path) -> dict[str, Any] | None:
        """The training env config stored in a model ``.zip``, without loading the network (``None`` if absent)."""
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
        config = data.get(ENV_CONFIG_ATTRIBUTE)
        return dict(config) if isinstance(config, dict) else None

    def _pattern_centres(self) -> np.ndarray | None:
        """Pixel centres of the training pattern when it is a fixed one, else None."""
        pattern = (self.env_config or {}).get("pattern")
        if pattern not in PATTERNS or pattern in RANDOM_PATTERNS:
            return None
        rows, cols = uv_to_pixel(make_pattern(pattern, self.pixel_shape[0]))
        return pixel_to_uv(rows, cols)

    # --- checks ---------------------------------------------------------------------------------------------

    def _fix_hint(self, what: str) -> str:
        trained = _pixel_options(self.pixel_shape)
        config = self.env_config
        if config is not None:
            trained = (f"sample_count={config['sample_count']}, color={config['color']!r}, "
                       f"pattern={config['pattern']!r}")
        return (f"make the env with the model's options (gym.make('SGAPS-SMB-v0', {trained}, ...)), or train a model "
                f"for this env ({what})")

    def check_observation(self, observation: dict[str, np.ndarray]) -> None:
        """Raise ``ValueError`` when ``observation`` does not have the shapes the model was trained with."""
        if not isinstance(observation, dict) or not _OBSERVATION_KEYS <= set(observation):
            keys = sorted(observation) if isinstance(observation, dict) else type(observation).__name__
            raise ValueError(f"SB3Player needs an SGAPS observation dict with keys {sorted(_OBSERVATION_KEYS)}, "
                             f"got {keys}")
        pixels = np.shape(observation["pixels"])
        if pixels != self.pixel_shape:
            got = _pixel_options(pixels) if len(pixels) == 2 else f"shape {pixels}"
            raise ValueError(
                f"pixel shape mismatch: the model {self.path.name} was trained on pixels of shape {self.pixel_shape} "
                f"({_pixel_options(self.pixel_shape)}), but this observation's pixels have shape {pixels} ({got}): "
                + self._fix_hint(f"agents/train_player.py --sample-count {pixels[0] if pixels else '?'}"
                                 f"{' --color rgb' if len(pixels) == 2 and pixels[1] == 5 else ''})"))
        for key in ("state", "state_mask"):
            shape = np.shape(observation[key])
            if shape != (self.state_dim,):
                raise ValueError(f"{key} shape mismatch: the model {self.path.name} was trained on a state vector of "
                                 f"length {self.state_dim}, but this observation's {key} has shape {shape}: make the "
                                 f"env with max_state_dim={self.state_dim}")

    def check_env(self, env: gym.Env) -> None:
        """Raise ``ValueError`` unless ``env`` (``SGAPS-SMB-v0`` or ``PlayerLearningWrapper``) fits the model.

        Checks the pixel and state shapes of its observation space and its number of buttons.
        """
        observation_space = env.observation_space
        if not (isinstance(observation_space, spaces.Dict) and _OBSERVATION_KEYS <= set(observation_space.spaces)):
            raise ValueError(f"env observation space {observation_space} is not SGAPS-SMB-v0's Dict(pixels, state, "
                             "state_mask)")
        self.check_observation({key: np.zeros(observation_space[key].shape, np.float32) for key in _OBSERVATION_KEYS})
        action_space = env.action_space
        buttons = action_space["buttons"] if isinstance(action_space, spaces.Dict) else action_space
        if not isinstance(buttons, spaces.Discrete) or int(buttons.n) != self.num_buttons:
            trained = f" ('{self.env_config['buttons']}')" if self.env_config else ""
            raise ValueError(f"button mismatch: the model {self.path.name} chooses among {self.num_buttons} buttons"
                             f"{trained}, but the env's buttons are {buttons}: make the env with the model's "
                             "button set")

    def _warn_if_other_pattern(self, pixels: np.ndarray) -> None:
        if self._pattern_warned or self._expected_uv is None:
            return
        if not np.allclose(np.asarray(pixels)[:, :2], self._expected_uv, atol=1e-6):
            self._pattern_warned = True
            warnings.warn(f"SB3Player: the observation's pixels are not at the '{self.env_config['pattern']}' pattern "
                          f"the policy was trained on, so it sees inputs it never saw; sample every frame at "
                          f"sgaps_env.make_pattern('{self.env_config['pattern']}', {self.pixel_shape[0]}) "
                          "(check_pattern=False silences this)", stacklevel=3)

    # --- the Player interface -------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Start an episode; ``seed`` seeds the sampling of a non-deterministic player."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def action_probabilities(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """The policy's probability of each button for ``observation`` (cleaned here), ``(num_buttons,)`` float64."""
        self.check_observation(observation)
        cleaned = PlayerLearningWrapper.clean(
            {key: np.asarray(observation[key], dtype=np.float32) for key in _OBSERVATION_KEYS})
        tensor, _ = self.model.policy.obs_to_tensor(cleaned)
        with torch.no_grad():
            probs = self.model.policy.get_distribution(tensor).distribution.probs[0]
        probs = probs.cpu().numpy().astype(np.float64)
        return probs / probs.sum()

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any] | None = None) -> int:
        """The button index for ``observation`` (the env's or the wrapper's): the policy's argmax, or a sample."""
        probs = self.action_probabilities(observation)
        if self.check_pattern:
            self._warn_if_other_pattern(observation["pixels"])
        if self.deterministic:
            return int(np.argmax(probs))
        return int(self._rng.choice(len(probs), p=probs))

    def __repr__(self) -> str:
        return (f"SB3Player({str(self.path)!r}, deterministic={self.deterministic}, pixels={self.pixel_shape}, "
                f"buttons={self.num_buttons})")


__all__ = ["ENV_CONFIG_ATTRIBUTE", "SB3Player"]
