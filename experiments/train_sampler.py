"""Learn where to sample with PPO, on recorded sessions of worlds 1-4: `python experiments/train_sampler.py --help`.

    python experiments/train_sampler.py                       # the shipped sampler, 20 min (one process)

A stable-baselines3 PPO (``MlpPolicy``) learns the weights of the ``blocks`` sampling plan and how far ahead to
predict the camera, frame by frame (``agents.sampler_env.SamplerReplayEnv``), from scratch (``--start uniform``:
an action of zeros weighs everything alike) or as a correction to the hand-made uncertainty policy's (``--start
uncertainty``, the default). It sees what the level-agnostic reconstructor's memory knows of each block under
the next screen, where the sprites will be and how unfamiliar the levels are (``agents.policies.plan_features``),
and its reward is its reconstruction's PSNR minus the hand-made uncertainty policy's on the same frame, less
``--action-penalty`` dB per unit of its squared weight corrections. Each world's sessions are reconstructed with
codebooks that never saw that world (``--codebooks``, built by ``build_codebook.py --worlds``; by default world 1's
for worlds 2-4 and worlds 1-2's for worlds 3-4, one drawn per episode), so the agent learns on levels the codebook
knows more or less of, as it will meet worlds 5-8. No frame
of worlds 5-8 is read.

Writes to --output: TensorBoard logs (``tensorboard --logdir runs/sampler``), checkpoints every
``--checkpoint-every`` steps, ``final_model.zip`` (what ``agents.policies.LearnedPolicy`` loads; copy it to
``models/checkpoints/sampler-blocks-worlds1-4.zip`` to ship it), the Monitor logs, ``learning_curve.csv`` and
``learning_curve.png`` (mean gain over the reference per frame of each finished episode against training steps),
and ``config.json``.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.monitor import Monitor, load_results
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from agents.policies import LOOKAHEAD_RANGE, PLAN_FEATURES, UNCERTAINTY_WEIGHTS, WEIGHT_RANGE
from agents.sampler_env import SamplerReplayEnv
from models.tile_reconstructor import load_codebook
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.session_file import list_sessions
from sgaps_env.worlds import TRAINING_WORLDS, session_world


@dataclass
class Args:
    """Options of the sampler training."""

    data: list[str] = field(default_factory=lambda: ["data/train_worlds.h5"])
    """recorded sessions of worlds 1-4 with frames"""
    worlds: list[int] = field(default_factory=lambda: [2, 3, 4])
    """worlds whose sessions train (each needs a codebook in --codebooks)"""
    codebooks: list[str] = field(default_factory=lambda: [
        "2=outputs/lwo/codebook-worlds1.npz", "3=outputs/lwo/codebook-worlds1.npz", "3=outputs/lwo/codebook-worlds1-2.npz",
        "4=outputs/lwo/codebook-worlds1.npz", "4=outputs/lwo/codebook-worlds1-2.npz"])
    """WORLD=PATH: a codebook that reconstructs that world's sessions (one counted without it); a world named more than
    once draws one of its codebooks per episode, so that its levels look more or less familiar"""
    output: Path = Path("runs/sampler")
    """run folder (logs, checkpoints, final_model.zip)"""
    sample_count: int = 500
    """pixels per frame"""
    episode_steps: int = 100
    """frames per episode, from a session's start (the memory starts empty)"""
    envs: int = 1
    """environments, each in its own process (1: in this process)"""
    timesteps: int = 36_000
    """PPO steps in all"""
    n_steps: int = 800
    """steps per environment per rollout"""
    batch_size: int = 100
    """PPO minibatch size"""
    epochs: int = 10
    """PPO epochs per rollout"""
    learning_rate: float = 3e-4
    """Adam learning rate"""
    gamma: float = 0.8
    """discount: samples pay off over the next few frames (a block stays on screen about 25)"""
    log_std_init: float = -1.0
    """log of the policy's initial action noise (-1: each weight explored within about x/÷ 4.6)"""
    action_penalty: float = 2.0
    """dB taken off each frame's reward per unit of the squared weight corrections: keeps the sampler near the
    uncertainty policy's weights wherever a correction does not pay for itself (0: off)"""
    start: Literal["uniform", "uncertainty"] = "uncertainty"
    """what an action of zeros means: every weight alike (learn from scratch), or the uncertainty policy's weights
    (learn a correction to them)"""
    checkpoint_every: int = 10_000
    """save a checkpoint every this many steps"""
    seed: int = 0
    """seed of PPO and of the environments' episode draws"""
    threads: int = 1
    """torch threads per process"""
    progress: bool = True
    """show a progress bar"""


def validate(args: Args) -> dict[int, list[str]]:
    """The checks the types cannot express -> ``{world: [codebook path, ...]}``; a ValueError names the option."""
    require_at_least(args, ("sample_count", "episode_steps", "envs", "timesteps", "n_steps", "batch_size", "epochs",
                            "checkpoint_every", "threads"))
    if not 0.0 < args.gamma <= 1.0:
        raise ValueError(f"--gamma is a discount in (0, 1], got {args.gamma}")
    if not 0.0 <= args.action_penalty < float("inf"):
        raise ValueError(f"--action-penalty is a finite dB >= 0, got {args.action_penalty}")
    if not args.learning_rate > 0:
        raise ValueError(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.timesteps < args.n_steps * args.envs:
        raise ValueError(f"--timesteps {args.timesteps} is less than one rollout ({args.n_steps} steps x {args.envs} "
                         "environments): raise --timesteps or lower --n-steps")
    bad = sorted(set(args.worlds) - set(TRAINING_WORLDS))
    if bad:
        raise ValueError(f"--worlds {bad}: only worlds {list(TRAINING_WORLDS)} may train (5-8 are held out)")
    codebooks: dict[int, list[str]] = {}
    for entry in args.codebooks:
        world, _, path = entry.partition("=")
        if not world.isdigit() or not path:
            raise ValueError(f"--codebooks takes WORLD=PATH entries, got {entry!r}")
        codebooks.setdefault(int(world), []).append(path)
    missing = sorted(set(args.worlds) - set(codebooks))
    if missing:
        raise ValueError(f"no --codebooks entry for world(s) {missing}: build one that never saw the world, e.g. "
                         f"`python experiments/build_codebook.py --data data/train_worlds.h5 --max-steps None --every 2 "
                         f"--worlds 1 2 --output outputs/lwo/codebook-worlds1-2.npz` for worlds 3 and 4")
    for world in args.worlds:
        for path in codebooks[world]:
            if not Path(path).is_file():
                raise ValueError(f"no codebook at {path} (world {world}): build it as the README's sampling section "
                                 "says")
    return {world: codebooks[world] for world in args.worlds}


def base_weights(args: Args) -> tuple[int, ...]:
    """The weights an action of zeros stands for (``--start``)."""
    return UNCERTAINTY_WEIGHTS if args.start == "uncertainty" else (255,) * len(UNCERTAINTY_WEIGHTS)


def make_env(args: Args, codebook_paths: dict[int, list[str]], rank: int, monitor_folder: Path) -> Monitor:
    torch.set_num_threads(args.threads)
    sessions = [s for s in list_sessions(args.data) if s.has_frames and session_world(s) in codebook_paths]
    if not sessions:
        raise ValueError(f"no sessions of worlds {sorted(codebook_paths)} with frames in {args.data}")
    codebooks = {world: [load_codebook(path)[0] for path in paths] for world, paths in codebook_paths.items()}
    env = SamplerReplayEnv(sessions, codebooks, count=args.sample_count, steps=args.episode_steps,
                           base_weights=base_weights(args), action_penalty=args.action_penalty)
    env.reset(seed=args.seed + rank)
    monitor_folder.mkdir(parents=True, exist_ok=True)
    return Monitor(env, filename=str(monitor_folder / f"env{rank}"), info_keywords=("episode_gain_db",))


def learning_curve(monitor_dir: Path, output: Path) -> list[dict]:
    """Every finished episode of every environment, in order of time -> ``learning_curve.csv`` and ``.png``:
    the mean gain over the reference per frame (dB, without the action penalty)."""
    episodes = []
    for row in load_results(str(monitor_dir)).itertuples():
        episodes.append({"length": int(row.l), "gain_db": float(row.episode_gain_db), "time_s": float(row.t)})
    episodes.sort(key=lambda e: e["time_s"])
    total = 0
    for episode in episodes:
        total += episode["length"]
        episode["training_steps"] = total
    if not episodes:
        return episodes
    with open(output / "learning_curve.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(episodes[0]))
        writer.writeheader()
        writer.writerows(episodes)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([e["training_steps"] for e in episodes])
    gains = np.array([e["gain_db"] for e in episodes])
    window = max(1, len(gains) // 10)
    smooth = np.convolve(gains, np.ones(window) / window, mode="valid")
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(steps, gains, ".", color="tab:blue", alpha=0.35, label="episode")
    axis.plot(steps[window - 1:], smooth, color="black", linewidth=2, label=f"running mean of {window}")
    axis.axhline(0.0, color="tab:red", linewidth=1, label="the hand-made uncertainty policy")
    axis.set(xlabel="training steps", ylabel="PSNR gain over the reference (dB per frame)",
             title="Learned sampler on worlds 1-4 (codebooks without the episode's world)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output / "learning_curve.png", dpi=110)
    plt.close(figure)
    return episodes


def main(args: Args) -> Path:
    codebook_paths = validate(args)
    torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "config.json").write_text(json.dumps(asdict(args), default=str, indent=2))
    monitor_dir = args.output / "monitor"
    factories = [partial(make_env, args, codebook_paths, rank, monitor_dir) for rank in range(args.envs)]
    env = SubprocVecEnv(factories) if args.envs > 1 else DummyVecEnv(factories)
    model = PPO("MlpPolicy", env, n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.epochs,
                learning_rate=args.learning_rate, gamma=args.gamma, seed=args.seed, device="cpu", verbose=0,
                policy_kwargs={"net_arch": [128, 128], "log_std_init": args.log_std_init}, tensorboard_log=str(args.output / "tensorboard"))
    checkpoints = CheckpointCallback(max(1, args.checkpoint_every // args.envs), str(args.output / "checkpoints"),
                                     name_prefix="sampler")
    model.learn(args.timesteps, callback=checkpoints, progress_bar=args.progress)
    # what LearnedPolicy needs to play it: the weights its actions correct, and what it was trained on
    model.sgaps_sampler = {"base_weights": list(base_weights(args)), "weight_range": WEIGHT_RANGE,
                           "lookahead_range": LOOKAHEAD_RANGE, "action_penalty": args.action_penalty,
                           "plan_features": PLAN_FEATURES, "sample_count": args.sample_count, "worlds": args.worlds,
                           "codebooks": args.codebooks, "timesteps": args.timesteps}
    final = args.output / "final_model.zip"
    model.save(final)
    env.close()
    episodes = learning_curve(monitor_dir, args.output)
    if episodes:
        fifth = max(1, len(episodes) // 5)
        first, last = np.mean([e["gain_db"] for e in episodes[:fifth]]), np.mean([e["gain_db"] for e in episodes[-fifth:]])
        print(f"gain over the uncertainty policy per frame: first fifth of the episodes {first:+.2f} dB, last fifth "
              f"{last:+.2f} dB ({last - first:+.2f} dB, {len(episodes)} episodes)")
    print(f"wrote {final}, learning_curve.csv/png and TensorBoard logs in {args.output}")
    return final


if __name__ == "__main__":
    run_script(main, Args, __doc__)
