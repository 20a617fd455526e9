"""Learn where to sample with PPO: `python experiments/train_sampler.py --help`.

    python experiments/train_sampler.py --output runs/sampler --timesteps 24000

A stable-baselines3 PPO (``MultiInputPolicy``) learns ``SamplerLearningWrapper``'s action: a weight
per tile of a ``--tiles x --tiles`` grid, turned into exactly ``--sample-count`` coordinates for the
next frame. A fixed player (``--player``) presses the buttons; the reward of a step is the SPT's
PSNR (dB) of the frame sampled where the policy chose (``models.scoring.SPTScorer``), minus
``--reward-offset`` and times ``--reward-scale`` so that PPO's value targets start near zero. One
environment per ``--stages`` entry runs in turn in this process.

Writes to --output: TensorBoard logs (``tensorboard --logdir runs/sampler``), checkpoints every
``--checkpoint-every`` steps, ``final_model.zip`` (what ``agents.policies.LearnedPolicy`` and
``experiments/evaluate_policies.py --learned-model`` load), the Monitor logs, ``learning_curve.csv``
and ``learning_curve.png`` (mean PSNR per step of each finished episode against training steps),
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

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.monitor import Monitor, load_results
from stable_baselines3.common.vec_env import DummyVecEnv

import sgaps_env
from agents.players import PLAYERS, make_player
from models.scoring import SPTScorer
from models.spt import DEFAULT_CHECKPOINT
from sgaps_env import parse_stage
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.wrappers import SamplerLearningWrapper


@dataclass
class Args:
    """Options of the sampler training."""

    output: Path = Path("runs/sampler")
    """run folder (logs, checkpoints, final_model.zip)"""
    stages: list[str] = field(default_factory=lambda: ["1-1", "1-2", "2-1"])
    """one environment per stage (the SPT's trained stages)"""
    player: Literal[*sorted(PLAYERS)] = "heuristic"
    """who presses the buttons"""
    sample_count: int = 500
    """pixels per frame"""
    tiles: int = 8
    """the action is one weight per tile of a tiles x tiles grid"""
    checkpoint: Path = DEFAULT_CHECKPOINT
    """SPT checkpoint that scores the samples (RGB)"""
    timesteps: int = 24_000
    """environment steps in all"""
    max_episode_steps: int = 400
    """time limit of an episode in steps"""
    n_steps: int = 256
    """PPO rollout length per environment"""
    batch_size: int = 128
    """PPO minibatch size"""
    epochs: int = 4
    """PPO epochs per rollout"""
    learning_rate: float = 3e-4
    """Adam learning rate"""
    gamma: float = 0.9
    """discount: a sample choice pays off over the next few frames (memory)"""
    reward_offset: float = 50.0
    """subtracted from the PSNR reward"""
    reward_scale: float = 0.1
    """multiplies the reward after the offset"""
    checkpoint_every: int = 6_000
    """save a checkpoint every n environment steps"""
    seed: int = 0
    """seed of PPO and of the environments"""
    threads: int = 2
    """torch CPU threads"""
    progress: bool = True
    """show stable-baselines3's progress bar"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    if not args.stages:
        raise ValueError("--stages needs at least one stage, e.g. --stages 1-1")
    for stage in args.stages:
        parse_stage(stage)
    if len(set(args.stages)) != len(args.stages):
        raise ValueError(f"--stages lists a stage twice ({args.stages}): each stage gets one environment and one "
                         "Monitor log")
    require_at_least(args, ("sample_count", "tiles", "timesteps", "max_episode_steps", "n_steps", "batch_size", "epochs",
                 "checkpoint_every", "threads"))
    if not 0.0 < args.gamma <= 1.0:
        raise ValueError(f"--gamma is a discount in (0, 1], got {args.gamma}")
    if not args.learning_rate > 0:
        raise ValueError(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.timesteps < args.n_steps * len(args.stages):
        raise ValueError(f"--timesteps {args.timesteps} is less than one rollout ({args.n_steps} steps x "
                         f"{len(args.stages)} environments): raise --timesteps or lower --n-steps")


def make_env(args: Args, stage: str, monitor_folder: Path) -> gym.Env:
    """One stage's environment, scored by the SPT (passed to the env explicitly: the env loads no checkpoint)."""
    env = gym.make(sgaps_env.ENV_ID, stage=stage, sample_count=args.sample_count, color="rgb",
                   scorer=SPTScorer(args.checkpoint), max_episode_steps=args.max_episode_steps)
    env = SamplerLearningWrapper(env, make_player(args.player), tiles=args.tiles)
    monitor_folder.mkdir(parents=True, exist_ok=True)
    env = Monitor(env, filename=str(monitor_folder))  # writes monitor_folder/monitor.csv
    return gym.wrappers.TransformReward(env, lambda reward: (reward - args.reward_offset) * args.reward_scale)


def learning_curve(monitor_dir: Path, output: Path) -> list[dict]:
    """Every finished episode of every environment (one Monitor folder per stage), in order of time -> csv and png."""
    episodes = []
    for folder in sorted(path for path in monitor_dir.iterdir() if path.is_dir()):
        steps = 0
        for row in load_results(str(folder)).itertuples():
            length = int(row.l)
            steps += length
            # Monitor sums the raw PSNR rewards (before TransformReward): mean PSNR per step
            episodes.append({"stage": folder.name, "env_steps": steps, "length": length,
                             "mean_psnr": float(row.r) / length, "time_s": float(row.t)})
    episodes.sort(key=lambda e: e["time_s"])
    total = 0
    for episode in episodes:
        total += episode["length"]
        episode["training_steps"] = total
    if episodes:
        with open(output / "learning_curve.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(episodes[0]))
            writer.writeheader()
            writer.writerows(episodes)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(7, 4))
        for stage in sorted({e["stage"] for e in episodes}):
            points = [(e["training_steps"], e["mean_psnr"]) for e in episodes if e["stage"] == stage]
            axis.plot(*zip(*points), marker=".", linewidth=0.8, label=stage)
        values = np.array([e["mean_psnr"] for e in episodes])
        window = max(1, len(values) // 8)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axis.plot([e["training_steps"] for e in episodes][window - 1:], smooth, color="black", linewidth=2,
                  label=f"all, running mean of {window}")
        axis.set(xlabel="training steps", ylabel="mean PSNR per step of the episode (dB)",
                 title="Learned sampler: SPT PSNR during training")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(output / "learning_curve.png", dpi=110)
        plt.close(figure)
    return episodes


def main(args: Args) -> Path:
    validate(args)
    torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "config.json").write_text(json.dumps(asdict(args), default=str, indent=2))
    monitor_dir = args.output / "monitor"
    monitor_dir.mkdir(exist_ok=True)
    env = DummyVecEnv([partial(make_env, args, stage, monitor_dir / stage) for stage in args.stages])
    env.seed(args.seed)
    model = PPO("MultiInputPolicy", env, n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.epochs,
                learning_rate=args.learning_rate, gamma=args.gamma, seed=args.seed, device="cpu", verbose=0,
                policy_kwargs={"net_arch": [128, 128]}, tensorboard_log=str(args.output / "tensorboard"))
    checkpoints = CheckpointCallback(max(1, args.checkpoint_every // len(args.stages)), str(args.output / "checkpoints"),
                                     name_prefix="sampler")
    model.learn(args.timesteps, callback=checkpoints, progress_bar=args.progress)
    final = args.output / "final_model.zip"
    model.save(final)
    env.close()
    episodes = learning_curve(monitor_dir, args.output)
    if episodes:
        first, last = episodes[:max(1, len(episodes) // 5)], episodes[-max(1, len(episodes) // 5):]
        print(f"mean PSNR per step: first fifth of the episodes {np.mean([e['mean_psnr'] for e in first]):.2f} dB, "
              f"last fifth {np.mean([e['mean_psnr'] for e in last]):.2f} dB ({len(episodes)} episodes)")
    print(f"wrote {final}, learning_curve.csv/png and TensorBoard logs in {args.output}")
    return final


if __name__ == "__main__":
    run_script(main, Args, __doc__)
