"""Where sessions' models live: a :class:`SessionHost` holds the reconstructor memory, sampling policy and
recording journal of each of its sessions and runs their frames in batches.

A host runs either inside the server's process (``--processes 0``) or alone in a worker process
(``--processes N``, :mod:`sgaps_server.workers`), which is how a server uses more than one core: the
tile reconstructor and the policies are numpy work that holds Python's global interpreter lock, so
threads of one process share one core. Everything that crosses to a host is plain data (decoded
messages, ids, numbers), so the same host code runs in both places.

A batch (:meth:`SessionHost.run_batch`) holds at most one frame per session, of any of the host's
sessions:

1. each frame's samples go back to ``(u, v, values)`` rows at the coordinates the host told its client;
2. every frame is reconstructed, the SPT's in **one forward pass** (``SPTReconstructor.reconstruct_batch``),
   the tile reconstructor's one after another (it has no network: numpy per sampled block);
3. each session's policy chooses the next coordinates from its memory, PSNR is measured when the client
   sent the truth, and the frame is appended to the session's journal.

A frame that fails in one session (refused by the reconstructor, a bug) becomes that session's outcome
and touches no other session of the batch.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.policies import LearnedPolicy, make_policy
from models.memory import StagePriors
from models.metrics import psnr
from models.spt import SPTReconstructor
from models.tile_reconstructor import TileReconstructor, load_codebook
from sgaps_env.coords import channels_for, frame_values
from sgaps_env.wire import FrameData, FrameTruth, UVCoordinates

from sgaps_server.config import ServerConfig
from sgaps_server.session import BAD_MESSAGE, Rejected

@dataclass
class FrameResult:
    """What one frame produced on its host."""

    coordinates: UVCoordinates
    psnr_db: float | None


@dataclass
class _Hosted:
    reconstructor: Any
    policy: Any
    journal: Any
    color: str
    coords: np.ndarray | None
    """where the client samples the next frame; None until the last description is expanded"""
    latest: np.ndarray | None = None
    """the last reconstruction, drawn as a PNG only when the page asks (:meth:`SessionHost.png`)"""


def model_version(config: ServerConfig) -> str:
    """What the server tells clients it reconstructs with (``session_start_ack.model_version``)."""
    if config.reconstructor.startswith("tiles"):
        return f"tiles:{Path(config.codebook).stem}" + (f"+{Path(config.atlas).stem}"
                                                         if config.reconstructor == "tiles+atlas" else "")
    return f"spt:{Path(config.checkpoint).stem}"


def _png(reconstruction: np.ndarray) -> bytes:
    from PIL import Image

    image = np.rint(np.clip(reconstruction, 0.0, 1.0) * 255.0).astype(np.uint8)
    image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class SessionHost:
    """The sessions of one process (see the module docstring). Shared and read-only: the codebook, atlas,
    SPT network and learned sampler, loaded once."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.sessions: dict[str, _Hosted] = {}
        self.codebook = self.atlas = self.spt = self.learned_model = None
        if config.reconstructor.startswith("tiles"):
            self.codebook = load_codebook(config.codebook)[0]
            if config.reconstructor == "tiles+atlas":
                self.atlas = StagePriors.load(config.atlas)[0]
        else:
            self.spt = SPTReconstructor(config.checkpoint)
        if config.policy == "learned":
            from stable_baselines3 import PPO

            if not Path(config.learned_model).is_file():
                raise ValueError(f"no sampler model at {config.learned_model}: pass --learned-model or another --policy")
            self.learned_model = PPO.load(config.learned_model, device="cpu")

    def new_reconstructor(self):
        """A session's reconstructor: its own memory over the shared codebook, atlas or network."""
        if self.spt is not None:
            return SPTReconstructor.from_model(self.spt.model, self.spt.priors, self.spt.memory.config)
        return TileReconstructor(self.codebook, atlas=self.atlas, max_pages=self.config.max_pages)

    def new_policy(self, reconstructor):
        """A session's policy, reading ``reconstructor``'s memory; blocks are drawn in the fast order
        (``BlockPlan.fast_order``: the client expands each plan too, so both ends save the time)."""
        config = self.config
        if config.policy == "learned":
            return LearnedPolicy(config.sample_count, config.learned_model, reconstructor, model=self.learned_model,
                                 fast_order=True)
        return make_policy(config.policy, config.sample_count, reconstructor=reconstructor, fast_order=True)

    # --- sessions ------------------------------------------------------------------------------------------

    def open(self, session_id: str, checkpoint_key: str, color: str, max_state_dim: int, seed: int,
             attrs: dict[str, Any]) -> UVCoordinates:
        """Start a session; the coordinates of its first frame."""
        reconstructor = self.new_reconstructor()
        policy = self.new_policy(reconstructor)
        journal = None
        if self.config.record is not None:
            from sgaps_env.session_journal import SessionJournal

            journal = SessionJournal(self.config.record, checkpoint_key, session_id, attrs, self.config.sample_count,
                                     channels_for(color), max_state_dim)
        coords = policy.reset(seed)
        self.sessions[session_id] = _Hosted(reconstructor, policy, journal, color, coords)
        return UVCoordinates(0, description=policy.description)

    def close(self, session_id: str, **extra_attrs) -> None:
        """End a session: its memory goes, its journal becomes a shard of the session file."""
        hosted = self.sessions.pop(session_id, None)
        if hosted is not None and hosted.journal is not None:
            hosted.journal.close(**extra_attrs)

    def close_all(self, reason: str) -> None:
        for session_id in list(self.sessions):
            try:
                self.close(session_id, closed=reason)
            except Exception:  # noqa: BLE001 - the journal stays on disk and is recovered at the next start
                pass


    # --- frames ---------------------------------------------------------------------------------------------

    def run_batch(self, items: list[tuple[str, FrameData, FrameTruth | None]]) -> list[FrameResult | Exception]:
        """Reconstruct, choose the next coordinates, score and record each frame; one outcome per item."""
        hosted, frames = [], []
        reconstructions: list[Any] = [None] * len(items)
        for index, (session_id, frame, _) in enumerate(items):
            session = self.sessions.get(session_id)
            hosted.append(session)
            frames.append(None)
            if session is None:
                reconstructions[index] = KeyError(f"session {session_id} is not open on this host")
                continue
            try:
                self._expand(session)
                frames[index] = (frame.to_pixels(session.coords), frame.state, frame.state_mask)
            except Exception as error:  # noqa: BLE001 - one session's failure stays in that session
                reconstructions[index] = error
        spt = [i for i, session in enumerate(hosted)
               if frames[i] is not None and isinstance(session.reconstructor, SPTReconstructor)]
        if spt:
            outputs = SPTReconstructor.reconstruct_batch([hosted[i].reconstructor for i in spt], [frames[i] for i in spt])
            for i, output in zip(spt, outputs):
                reconstructions[i] = output
        for i, session in enumerate(hosted):
            if reconstructions[i] is None:
                try:
                    reconstructions[i] = session.reconstructor.reconstruct(*frames[i])
                except Exception as error:  # noqa: BLE001 - one session's failure stays in that session
                    reconstructions[i] = error
        outcomes: list[FrameResult | Exception] = []
        for (session_id, frame, truth), session, inputs, reconstruction in zip(items, hosted, frames, reconstructions):
            if isinstance(reconstruction, ValueError):
                outcomes.append(Rejected(BAD_MESSAGE, f"frame {frame.frame_id} was refused by the reconstructor: "
                                                      f"{reconstruction}"))
            elif isinstance(reconstruction, Exception):
                outcomes.append(reconstruction)
            else:
                try:
                    outcomes.append(self._finish(session, frame, truth, inputs[0], reconstruction))
                except Exception as error:  # noqa: BLE001
                    outcomes.append(error)
        return outcomes

    def _finish(self, session: _Hosted, frame: FrameData, truth: FrameTruth | None, pixels: np.ndarray,
                reconstruction: np.ndarray) -> FrameResult:
        observation = {"pixels": pixels, "state": frame.state, "state_mask": frame.state_mask}
        session.policy.next_description(observation, {"reconstruction": reconstruction})  # expanded after replying
        quality = None if truth is None else psnr(reconstruction, frame_values(truth.frame, session.color))
        if session.journal is not None:
            every = self.config.record_reconstruction_every
            session.journal.append_observation(
                observation, frame.timestamp_ms / 1000.0, frame=None if truth is None else truth.frame,
                reconstruction=reconstruction if every and frame.frame_id % every == 0 else None)
        session.coords = None
        session.latest = reconstruction
        return FrameResult(UVCoordinates(frame.frame_id + 1, description=session.policy.description), quality)

    @staticmethod
    def _expand(session: _Hosted) -> None:
        if session.coords is None:
            session.coords = session.policy.described_coords()

    def expand_pending(self) -> None:
        """Expand the descriptions just sent into the coordinates their next frames were sampled at: the work a
        worker does after replying, while the clients sample. A session whose expansion fails is left for its
        next frame, which expands it again and reports the failure as that frame's outcome."""
        for session in self.sessions.values():
            try:
                self._expand(session)
            except Exception:  # noqa: BLE001 - see the docstring
                pass

    def png(self, session_id: str) -> bytes | None:
        """The session's last reconstruction as a PNG (None before its first frame, or once it closed)."""
        session = self.sessions.get(session_id)
        return None if session is None or session.latest is None else _png(session.latest)
