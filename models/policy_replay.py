"""Running a sampling policy against a reconstructor: offline on recorded frames, or live in the env.

Offline (:func:`replay_offline`), a recorded session's true frames are replayed in order. On each
frame the policy's coordinates are sampled from the true frame, the samples travel up as a wire
``FrameData`` message (so the server sees exactly what the client would send, quantisation
included), the reconstructor rebuilds the frame, and the policy chooses the next frame's coordinates
from what it has seen (never the future; only the oracle is handed the true next frame). Those go
down as a ``UVCoordinates`` message, and the client's side regenerates them from the message and its
own state vectors (``sgaps_env.descriptions``); a mismatch raises, so every reported byte count is
for coordinates that really arrive. The recorded game does not depend on where it was sampled (the
environment draws sampling from its own generator), so replaying it under another policy is exact.

Live (:func:`run_live`), the policy samples ``SGAPS-SMB-v0`` through ``sgaps_env.rollout.Rollout``
while a player presses the buttons; the reconstruction of each frame reaches the policy as
``info["reconstruction"]``.

A policy is any ``sgaps_env.sampler.Sampler`` with ``count``, ``name``, ``needs_truth`` and
``description`` (``agents.policies`` builds them); this module imports ``sgaps_env`` and ``models`` only.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from models.metrics import foreground_psnr, psnr, ssim
from sgaps_env.coords import extract_pixels, frame_values
from sgaps_env.descriptions import ClientContext, coords_from_message
from sgaps_env.rollout import Rollout
from sgaps_env.wire import FrameData, UVCoordinates, decode


class _Link:
    """Both ends of the wire for one session: encodes, decodes, counts bytes and checks that the
    client regenerates the server's coordinates exactly."""

    def __init__(self, count: int):
        self.count = count
        self.client = ClientContext()
        self.client_coords: np.ndarray | None = None

    def downlink(self, frame_id: int, description: dict | None, coords: np.ndarray) -> int:
        if description is None:
            message = UVCoordinates(frame_id, coords=coords)
        else:
            message = UVCoordinates(frame_id, description=description)
        data = message.encode()
        regenerated = coords_from_message(decode(data), self.count, self.client, self.client_coords)
        if not np.array_equal(regenerated, coords):
            raise RuntimeError(f"frame {frame_id}: the client regenerated other coordinates than the policy chose from "
                               f"description {description!r}: the policy does not go through coords_from_description")
        self.client_coords = regenerated
        return len(data)

    def uplink(self, frame_id: int, observation: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """``(the observation as the server decodes it, bytes)``; the client remembers the state it sent."""
        data = FrameData.from_observation(frame_id, observation).encode()
        received = decode(data)
        coords = observation["pixels"][:, :2]
        self.client.advance(observation["state"], observation["state_mask"])
        return {"pixels": received.to_pixels(coords), "state": received.state,
                "state_mask": received.state_mask}, len(data)


def gray_uplink_bytes(frame: np.ndarray, coords: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> int:
    """Bytes of the ``FrameData`` the client would send for these coordinates in luma."""
    observation = {"pixels": extract_pixels(frame, coords, "gray"), "state": state, "state_mask": state_mask}
    return len(FrameData.from_observation(0, observation).encode())


def replay_offline(policy, reconstructor, frames: np.ndarray, states: np.ndarray, masks: np.ndarray, color: str,
                   seed: int, score_every: int = 1, with_ssim: bool = True, keep_steps: tuple[int, ...] = (),
                   quality_feedback: bool = False,
                   send_state: bool = True) -> tuple[list[dict[str, Any]], dict[int, dict[str, np.ndarray]]]:
    """Replay one recorded session's ``frames (T, H, W, 3)`` uint8 under ``policy`` -> ``(rows, kept)``.

    ``rows``: one dict per scored step (``step % score_every == 0``) with psnr, ssim, foreground_psnr,
    uplink_bytes (in ``color``), uplink_gray_bytes (the same samples in luma), downlink_bytes (the
    coordinates of this frame), policy_ms (choosing this frame's coordinates), reconstruct_ms.
    ``kept``: for each of ``keep_steps``, the truth, the sampled pixels' positions and the reconstruction.
    ``quality_feedback`` hands the policy the last frame's measured quality (``info["quality"]``, from
    the truth: what quality-based mask-update schedules read offline). A policy with ``needs_truth``
    (the oracle) is handed the true next frame, uint8, as ``info["next_frame"]``. ``send_state=False`` sends
    every state field masked (a client of a reconstructor that reads no state, e.g. the MAEs of
    ``models.mae``): the uplink carries the pixels alone, and the policy and reconstructor see no state.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8 RGB as recorded (RecordedSession.frames()), got "
                         f"{frames.dtype} {frames.shape}")
    if isinstance(score_every, bool) or not isinstance(score_every, (int, np.integer)) or score_every < 1:
        raise ValueError(f"score_every must be a positive integer (score every n-th frame), got {score_every!r}")
    count = policy.count
    link = _Link(count)
    reconstructor.reset()
    start = time.perf_counter()
    coords = policy.reset(seed)
    policy_ms = (time.perf_counter() - start) * 1000.0
    downlink = link.downlink(0, policy.description, coords)
    rows, kept = [], {}
    for step in range(len(frames)):
        frame, state, mask = frames[step], states[step], masks[step]
        observation = {"pixels": extract_pixels(frame, coords, color), "state": state,
                       "state_mask": mask if send_state else np.zeros_like(mask)}
        received, uplink = link.uplink(step, observation)
        start = time.perf_counter()
        reconstruction = reconstructor.reconstruct(received["pixels"], received["state"], received["state_mask"])
        reconstruct_ms = (time.perf_counter() - start) * 1000.0
        truth = frame_values(frame, color)
        scored = step % score_every == 0
        quality = None
        if scored or quality_feedback:
            quality = {"psnr": psnr(reconstruction, truth),
                       "ssim": ssim(reconstruction, truth) if (with_ssim or quality_feedback) else float("nan")}
        if scored:
            gray_bytes = gray_uplink_bytes(frame, coords, state, observation["state_mask"])
            rows.append({"step": step, **quality, "foreground_psnr": foreground_psnr(reconstruction, truth, state, mask),
                         "uplink_bytes": uplink, "uplink_gray_bytes": gray_bytes,
                         "downlink_bytes": downlink, "policy_ms": policy_ms, "reconstruct_ms": reconstruct_ms})
        if step in keep_steps:
            kept[step] = {"truth": truth, "coords": coords.copy(), "reconstruction": reconstruction}
        if step + 1 == len(frames):
            break
        info: dict[str, Any] = {"reconstruction": reconstruction}
        if quality_feedback:
            info["quality"] = quality
        if policy.needs_truth:
            info["next_frame"] = frames[step + 1]
        start = time.perf_counter()
        coords = policy.next_coords(received, info)
        policy_ms = (time.perf_counter() - start) * 1000.0
        downlink = link.downlink(step + 1, policy.description, coords)
    return rows, kept


def run_live(policy, reconstructor, player, stage: str, seed: int, steps: int, color: str = "rgb",
             with_ssim: bool = False, played: list | None = None) -> list[dict[str, Any]]:
    """Play up to ``steps`` frames of ``stage`` live with ``player`` on the buttons and ``policy`` on the
    coordinates; one row per frame (the reset frame first) with psnr (and ssim) and foreground_psnr
    of ``reconstructor`` against the true frame. The episode may end earlier (death, flag). ``played``, if
    given, receives ``(frame uint8, state, state_mask)`` of every frame (to replay it offline).

    The oracle cannot run live (it needs the true next frame before it is emulated).
    """
    import gymnasium as gym

    import sgaps_env  # noqa: F401  (registers SGAPS-SMB-v0)

    if policy.needs_truth:
        raise ValueError(f"policy {policy.name!r} reads the true next frame and runs in offline evaluation only")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    env = gym.make("SGAPS-SMB-v0", stage=stage, sample_count=policy.count, color=color, return_frame=True)
    try:
        reconstructor.reset()
        rows = []
        for step in Rollout(env, player, policy, seed=seed, max_steps=steps):
            observation = step.observation
            reconstruction = reconstructor.reconstruct(observation["pixels"], observation["state"],
                                                       observation["state_mask"])
            step.info["reconstruction"] = reconstruction  # what the policy chooses the next coordinates from
            truth = frame_values(step.info["frame"], color)
            if played is not None:
                played.append((step.info["frame"].copy(), observation["state"].copy(), observation["state_mask"].copy()))
            rows.append({"step": step.step, "psnr": psnr(reconstruction, truth),
                         "ssim": ssim(reconstruction, truth) if with_ssim else float("nan"),
                         "foreground_psnr": foreground_psnr(reconstruction, truth, observation["state"],
                                                            observation["state_mask"])})
            if len(rows) == steps:
                break
        return rows
    finally:
        env.close()
