"""Train a PPO player (stable-baselines3) that plays SGAPS-SMB-v0 from a fixed pattern of sampled pixels.

The environment is PlayerLearningWrapper(gym.make("SGAPS-SMB-v0", stage=..., ...), pattern=...):
every frame is sampled at the same fixed --pattern of --sample-count pixels, and the agent only
chooses the buttons (Discrete, the --buttons set). The observation is the sampled pixels, the RAM
state vector (masked entries set to 0) and its mask, fed to SB3's MultiInputPolicy (each part
flattened, then an MLP of --net-arch) on the CPU.

Reward: the env's game reward (gym-super-mario-bros': x progress, clock, score, coins, power-up,
flag +50, death -25, summed over the step's frames), multiplied by --reward-scale through a
gymnasium TransformReward wrapper, so that typical per-step values are below 1. The Monitor that
records episodes sits below the scaling: ep_rew_mean, eval/mean_reward and the Monitor CSVs are in
raw game-reward units. Episodes end at death, at the flag, or after --max-episode-steps steps
(gym.make's TimeLimit, a truncation).

A run writes into --out (default runs/player/<timestamp>, git-ignored):

  config.json            these options, the env config, versions, and the checkpoint resumed from
  tb/PPO_*/              TensorBoard: SB3's rollout/, train/, time/ and eval/ scalars, plus
                           rollout/ep_furthest_x_mean and rollout/success_rate (flag share), both over
                           the last 100 episodes like ep_rew_mean, rollout/ep_furthest_x_max (this run's best),
                           episode/furthest_x, episode/flag_get, episode/reward (one point per episode),
                           eval/furthest_x_mean, eval/success_rate (flag share)
  monitor/               Monitor CSVs, one row per episode (r, l, t, furthest_x, flag_get)
  checkpoints/           ppo_player_<steps>_steps.zip every --checkpoint-freq steps
  best_model.zip         the model with the best mean evaluation reward (--eval-freq > 0)
  evaluations.npz        every evaluation's episode rewards and lengths (SB3's EvalCallback)
  final_model.zip        the model at the end (also on Ctrl-C)
  summary.json           steps, wall time, steps/s, training episodes, the evaluations, and a final
                           evaluation of final_model.zip and best_model.zip over --final-eval-episodes
                           seeded episodes, with the most probable button and sampling from the policy

The saved models carry the env config (attribute sgaps_env_config), which agents.sb3_player.SB3Player
uses to check that an env gives the observations the model was trained on.

    python agents/train_player.py                                   # stage 1-1, defaults below
    python agents/train_player.py --total-timesteps 200000 --num-envs 2
    python agents/train_player.py --resume runs/player/<run>/checkpoints/ppo_player_100000_steps.zip
    tensorboard --logdir runs/player
"""
from __future__ import annotations

import datetime
import json
import math
import operator
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):  # run as a file (python agents/train_player.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback, EvalCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

import sgaps_env  # registers SGAPS-SMB-v0
from agents.sb3_player import ENV_CONFIG_ATTRIBUTE, SB3Player
from sgaps_env import FRAME_HEIGHT, FRAME_WIDTH, PATTERNS, PlayerLearningWrapper, parse_stage
from sgaps_env.buttons import BUTTON_SETS
from sgaps_env.cli import run_script
from sgaps_env.coords import COLOR_CHANNELS

#: Options that define the observation and action spaces: a checkpoint can only resume with the same values.
SPACE_OPTIONS = ("sample_count", "color", "buttons")


@dataclass
class Args:
    """Options of the player training."""

    stage: str = "1-1"
    """stage to train on, 'W-S'"""
    total_timesteps: int = 200_000
    """env steps to train in this run (on --resume: added to the checkpoint's count), rounded up to whole rollouts
    of n_steps x num_envs"""
    num_envs: int = 2
    """parallel envs: > 1 runs them in SubprocVecEnv worker processes (start method 'spawn'), 1 in-process
    (DummyVecEnv)"""
    sample_count: int = 256
    """pixels sampled per frame, all the policy sees of the screen: the MLP's input grows with it (N x (2 + C)
    values beside the 64-value state vector, which already locates Mario and the enemies), so a small N keeps
    the network small and the updates fast"""
    color: Literal[*sorted(COLOR_CHANNELS)] = "gray"
    """colour mode of the samples: BT.601 luma (1 value per pixel) or RGB (3)"""
    frame_skip: int = 4
    """NES frames per step (the buttons are held for all of them)"""
    buttons: Literal[*sorted(BUTTON_SETS)] = "simple"
    """button set of the Discrete action (simple: 7 combos incl. NOOP, left, A)"""
    pattern: Literal[*sorted(PATTERNS)] = "uniform_grid"
    """fixed sampling pattern of every frame ('random'/'stratified' are redrawn every step); a player must be shown
    the same pattern later"""
    max_episode_steps: int = 1000
    """time limit per episode in steps (gym.make's TimeLimit), so a stuck agent does not play out the whole game
    clock; the agent's runs that cleared 1-1 took 389 to 575 steps"""
    reward_scale: float = 1 / 15
    """the game reward is multiplied by this (gymnasium TransformReward) before PPO sees it; logged rewards stay
    unscaled"""
    learning_rate: float = 2.5e-4
    """Adam learning rate (constant)"""
    n_steps: int = 512
    """steps per env per rollout (a rollout is n_steps x num_envs transitions)"""
    batch_size: int = 128
    """minibatch size of the PPO update (at most n_steps x num_envs)"""
    n_epochs: int = 10
    """passes over each rollout in the PPO update"""
    gamma: float = 0.9
    """discount factor: the reward is dense (x progress every step), so a short horizon (1 / (1 - 0.9) = 10 steps)
    is the usual choice for Super Mario Bros"""
    gae_lambda: float = 0.95
    """GAE lambda of the advantage estimate"""
    ent_coef: float = 0.01
    """entropy bonus coefficient (keeps exploring the buttons)"""
    clip_range: float = 0.2
    """PPO clip range of the policy ratio"""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden layer sizes of the policy and value MLPs (after flattening pixels, state and mask)"""
    seed: int = 0
    """seed of PPO, the training envs (env i gets seed + i) and thus of the reset no-ops"""
    out: Path | None = None
    """run folder (default: runs/player/<timestamp>); must not hold a run already"""
    checkpoint_freq: int = 50_000
    """save a checkpoint every this many env steps (0: none)"""
    eval_freq: int = 20_000
    """evaluate on a separate env every this many env steps, saving best_model.zip (0: never)"""
    eval_episodes: int = 5
    """episodes per evaluation (see --eval-deterministic)"""
    eval_seed: int = 10_000
    """seed of the evaluation env, re-applied before every evaluation so all see the same starts"""
    eval_deterministic: bool = True
    """evaluate with the most probable button (--no-eval-deterministic: sample from the policy, as in training)"""
    final_eval_episodes: int = 10
    """after training, evaluate final_model.zip and best_model.zip over this many seeded episodes, deterministic
    and sampled, into summary.json (0: skip)"""
    resume: Path | None = None
    """continue from this checkpoint .zip (network, optimizer, step count); this command's PPO options apply, its
    env options must match the checkpoint's"""
    torch_threads: int = 1
    """torch CPU threads of the training process (1 leaves the other cores to the env workers)"""
    verbose: Literal[0, 1, 2] = 0
    """SB3 verbosity: 0 quiet, 1 prints the log tables"""
    progress: bool = True
    """show stable-baselines3's progress bar (needs the rich package)"""


def validate(args: Args) -> None:
    """Raise ValueError, naming the option, for any value the training cannot use (the ranges tyro does not check)."""
    def need(condition: bool, message: str) -> None:
        if not condition:
            raise ValueError(message)

    try:
        parse_stage(args.stage)
    except ValueError as error:
        raise ValueError(f"--stage: {error}") from None
    need(args.total_timesteps >= 1, f"--total-timesteps must be at least 1, got {args.total_timesteps}")
    need(args.num_envs >= 1, f"--num-envs must be at least 1, got {args.num_envs}")
    need(1 <= args.sample_count <= FRAME_HEIGHT * FRAME_WIDTH,
         f"--sample-count must be in [1, {FRAME_HEIGHT * FRAME_WIDTH}] (the pixels of a frame), "
         f"got {args.sample_count}")
    need(args.frame_skip >= 1, f"--frame-skip must be at least 1, got {args.frame_skip}")
    need(args.max_episode_steps >= 1, f"--max-episode-steps must be at least 1, got {args.max_episode_steps}")
    need(math.isfinite(args.reward_scale) and args.reward_scale > 0,
         f"--reward-scale must be a positive finite number, got {args.reward_scale}")
    need(math.isfinite(args.learning_rate) and args.learning_rate > 0,
         f"--learning-rate must be positive, got {args.learning_rate}")
    need(args.n_steps >= 1, f"--n-steps must be at least 1, got {args.n_steps}")
    rollout = args.n_steps * args.num_envs
    need(rollout >= 2, f"a rollout (--n-steps x --num-envs) needs at least 2 transitions, got {rollout}")
    need(2 <= args.batch_size <= rollout,
         f"--batch-size must be in [2, n_steps x num_envs = {rollout}], got {args.batch_size}")
    need(args.n_epochs >= 1, f"--n-epochs must be at least 1, got {args.n_epochs}")
    need(0 < args.gamma <= 1, f"--gamma must be in (0, 1], got {args.gamma}")
    need(0 <= args.gae_lambda <= 1, f"--gae-lambda must be in [0, 1], got {args.gae_lambda}")
    need(math.isfinite(args.ent_coef) and args.ent_coef >= 0, f"--ent-coef must be >= 0, got {args.ent_coef}")
    need(math.isfinite(args.clip_range) and args.clip_range > 0,
         f"--clip-range must be positive, got {args.clip_range}")
    need(len(args.net_arch) >= 1 and all(size >= 1 for size in args.net_arch),
         f"--net-arch needs one or more positive layer sizes, got {args.net_arch}")
    need(args.checkpoint_freq >= 0, f"--checkpoint-freq must be >= 0 (0: no checkpoints), got {args.checkpoint_freq}")
    need(args.eval_freq >= 0, f"--eval-freq must be >= 0 (0: no evaluation), got {args.eval_freq}")
    need(args.eval_episodes >= 1, f"--eval-episodes must be at least 1, got {args.eval_episodes}")
    need(args.final_eval_episodes >= 0, f"--final-eval-episodes must be >= 0, got {args.final_eval_episodes}")
    need(args.torch_threads >= 1, f"--torch-threads must be at least 1, got {args.torch_threads}")
    if args.resume is not None:
        resume = Path(args.resume)
        need(resume.is_file(), f"--resume {resume}: no such file (expected a checkpoint .zip saved by this script)")
        need(resume.suffix == ".zip", f"--resume {resume}: expected a .zip saved by stable-baselines3")
    if args.out is not None and (Path(args.out) / "config.json").exists():
        raise ValueError(f"--out {args.out} already holds a run (config.json): choose a new folder, or leave --out "
                            "out for a fresh runs/player/<timestamp>; to continue that run use --resume "
                            "<its checkpoint or final_model.zip>")


# --- environments ---------------------------------------------------------------------------------------------


def env_config(args: Args) -> dict[str, Any]:
    """What the model sees and does: saved in config.json and inside every model (SB3Player checks it)."""
    return {
        "env_id": sgaps_env.ENV_ID,
        "stage": args.stage,
        "sample_count": args.sample_count,
        "color": args.color,
        "frame_skip": args.frame_skip,
        "buttons": args.buttons,
        "pattern": args.pattern,
        "max_episode_steps": args.max_episode_steps,
        "reward_scale": args.reward_scale,
    }


class EpisodeProgress(gym.Wrapper):
    """Adds ``info["furthest_x"]`` (largest ``x_pos`` of the episode so far) and ``info["is_success"]`` (= flag_get).

    SB3 turns ``is_success`` at the end of an episode into ``rollout/success_rate`` and ``eval/success_rate``.
    """

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        self._furthest_x = int(info["x_pos"])
        return observation, self._annotate(info)

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._furthest_x = max(self._furthest_x, int(info["x_pos"]))
        return observation, reward, terminated, truncated, self._annotate(info)

    def _annotate(self, info: dict[str, Any]) -> dict[str, Any]:
        info["furthest_x"] = self._furthest_x
        info["is_success"] = bool(info["flag_get"])
        return info


def make_env(config: dict[str, Any], monitor_file: str | None = None, reward_scale: float | None = None) -> gym.Env:
    """The training/evaluation env: TransformReward(Monitor(EpisodeProgress(PlayerLearningWrapper(gym.make(...)))))."""
    env = gym.make(config["env_id"], stage=config["stage"], sample_count=config["sample_count"], color=config["color"],
                   frame_skip=config["frame_skip"], buttons=config["buttons"],
                   max_episode_steps=config["max_episode_steps"])
    env = EpisodeProgress(PlayerLearningWrapper(env, pattern=config["pattern"]))
    env = Monitor(env, filename=monitor_file, info_keywords=("furthest_x", "flag_get"))
    if reward_scale is not None and reward_scale != 1.0:
        env = gym.wrappers.TransformReward(env, partial(operator.mul, float(reward_scale)))
    return env


def make_vec_env(config: dict[str, Any], num_envs: int, monitor_dir: Path, prefix: str,
                 reward_scale: float | None) -> VecEnv:
    """``num_envs`` envs: SubprocVecEnv (spawn) when more than one, else DummyVecEnv."""
    monitor_dir.mkdir(parents=True, exist_ok=True)
    factories = [partial(make_env, config, str(monitor_dir / f"{prefix}_{rank}"), reward_scale)
                 for rank in range(num_envs)]
    if num_envs > 1:
        return SubprocVecEnv(factories, start_method="spawn")
    return DummyVecEnv(factories)


# --- callbacks ------------------------------------------------------------------------------------------------


class EpisodeStatsCallback(BaseCallback):
    """Logs every finished training episode (furthest x, flag, reward) and the last-100 means to TensorBoard."""

    def __init__(self):
        super().__init__()
        self.episodes = 0
        self.flags = 0
        self.best_furthest_x = 0
        self._writer = None

    def _on_training_start(self) -> None:
        for output in self.model.logger.output_formats:
            if isinstance(output, TensorBoardOutputFormat):
                self._writer = output.writer

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            episode = info.get("episode")
            if episode is None:
                continue
            self.episodes += 1
            self.flags += bool(episode["flag_get"])
            self.best_furthest_x = max(self.best_furthest_x, int(episode["furthest_x"]))
            if self._writer is not None:
                step = self.num_timesteps
                self._writer.add_scalar("episode/furthest_x", episode["furthest_x"], step)
                self._writer.add_scalar("episode/flag_get", float(episode["flag_get"]), step)
                self._writer.add_scalar("episode/reward", episode["r"], step)
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.ep_info_buffer
        if buffer:
            self.logger.record("rollout/ep_furthest_x_mean", float(np.mean([e["furthest_x"] for e in buffer])))
        self.logger.record("rollout/ep_furthest_x_max", self.best_furthest_x)
        self.logger.record("rollout/episodes", self.episodes)


class SGAPSEvalCallback(EvalCallback):
    """SB3's EvalCallback that re-seeds the eval env before each evaluation and logs furthest x and the flag share."""

    def __init__(self, *args, eval_seed: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_seed = eval_seed
        self._furthest: list[int] = []
        self.history: list[dict[str, Any]] = []

    def _log_success_callback(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        super()._log_success_callback(locals_, globals_)
        if locals_["done"]:
            self._furthest.append(int(locals_["info"]["furthest_x"]))
            # recorded before EvalCallback dumps the logger; the last write is the mean over all episodes
            self.logger.record("eval/furthest_x_mean", float(np.mean(self._furthest)))
            self.logger.record("eval/furthest_x_max", int(np.max(self._furthest)))

    def _on_step(self) -> bool:
        evaluating = self.eval_freq > 0 and self.n_calls % self.eval_freq == 0
        if evaluating:
            self._furthest = []
            self.eval_env.seed(self.eval_seed)
        best_before = self.best_mean_reward
        keep_going = super()._on_step()
        if evaluating:
            rewards = self.evaluations_results[-1] if self.evaluations_results else [self.last_mean_reward]
            record = {"timesteps": int(self.num_timesteps), "mean_reward": float(np.mean(rewards)),
                      "furthest_x": list(self._furthest), "flags": int(sum(self._is_success_buffer))}
            self.history.append(record)
            print(f"eval @ {self.num_timesteps:,} steps: reward {record['mean_reward']:.0f}, furthest x mean "
                       f"{np.mean(self._furthest):.0f} (max {max(self._furthest)}), flag {record['flags']}/"
                       f"{len(self._furthest)}{'  (new best)' if self.best_mean_reward > best_before else ''}")
        return keep_going


# --- evaluation -----------------------------------------------------------------------------------------------


def evaluate_model(model_path: str | Path, episodes: int, seed: int, deterministic: bool = True) -> dict[str, Any]:
    """Play ``episodes`` episodes with ``SB3Player(model_path)`` on the env it was trained on (episode i: seed + i).

    The env is rebuilt from the model's own env config (stage, pixels, pattern, time limit). Returns the
    per-episode furthest x, flag, game reward, steps and end ("flag", "death" or "time limit"), and their summary.
    """
    player = SB3Player(model_path, deterministic=deterministic)
    config = player.env_config
    if config is None:
        raise ValueError(f"{model_path} carries no SGAPS env config: it was not saved by agents/train_player.py")
    env = make_env(config)
    player.check_env(env)
    results = []
    try:
        for episode in range(episodes):
            observation, info = env.reset(seed=seed + episode)
            player.reset(seed + episode)
            reward, steps, done = 0.0, 0, False
            while not done:
                observation, step_reward, terminated, truncated, info = env.step(player.act(observation, info))
                reward += float(step_reward)
                steps += 1
                done = terminated or truncated
            end = "flag" if info["flag_get"] else ("death" if terminated else "time limit")
            results.append({"seed": seed + episode, "furthest_x": int(info["furthest_x"]),
                            "flag_get": bool(info["flag_get"]), "reward": reward, "steps": steps, "end": end})
    finally:
        env.close()
    furthest = [r["furthest_x"] for r in results]
    return {
        "model": str(model_path),
        "episodes": episodes,
        "seed": seed,
        "deterministic": deterministic,
        "furthest_x_mean": float(np.mean(furthest)),
        "furthest_x_median": float(np.median(furthest)),
        "furthest_x_max": int(np.max(furthest)),
        "flag_share": float(np.mean([r["flag_get"] for r in results])),
        "reward_mean": float(np.mean([r["reward"] for r in results])),
        "per_episode": results,
    }


# --- main -----------------------------------------------------------------------------------------------------


def default_out() -> Path:
    """runs/player/<timestamp>, with a suffix if that folder exists already."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path("runs/player") / stamp
    suffix = 2
    while out.exists():
        out = Path("runs/player") / f"{stamp}-{suffix}"
        suffix += 1
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def ppo_options(args: Args) -> dict[str, Any]:
    """The PPO hyperparameters of this command line."""
    return {"learning_rate": args.learning_rate, "n_steps": args.n_steps, "batch_size": args.batch_size,
            "n_epochs": args.n_epochs, "gamma": args.gamma, "gae_lambda": args.gae_lambda,
            "ent_coef": args.ent_coef, "clip_range": args.clip_range}


def load_for_resume(args: Args, config: dict[str, Any], env: VecEnv, tensorboard_log: str) -> PPO:
    """The checkpoint with this command's PPO options, after checking that its env config matches."""
    saved = SB3Player.read_env_config(args.resume)
    if saved is not None:
        clashes = [f"{name}: checkpoint {saved.get(name)!r}, this run {config[name]!r}"
                   for name in SPACE_OPTIONS if saved.get(name) != config[name]]
        if clashes:
            raise ValueError(f"--resume {args.resume} was trained with other observation/action spaces ("
                                + "; ".join(clashes) + "): pass the checkpoint's values, e.g. "
                                + " ".join(f"--{name.replace('_', '-')} {saved.get(name)}" for name in SPACE_OPTIONS))
        changed = [f"{name} {saved.get(name)!r} -> {config[name]!r}" for name in config
                   if name not in SPACE_OPTIONS and saved.get(name) != config[name]]
        if changed:
            print(f"note: resuming with a different env config than the checkpoint's: {', '.join(changed)}")
    try:
        model = PPO.load(args.resume, env=env, device="cpu", tensorboard_log=tensorboard_log, verbose=args.verbose,
                         **ppo_options(args))
    except ValueError as error:  # SB3's space check, for checkpoints without an env config
        raise ValueError(f"--resume {args.resume} does not fit this env: {error}") from None
    if list(model.policy_kwargs.get("net_arch", [])) not in ([], list(args.net_arch)):
        print(f"note: --net-arch {args.net_arch} ignored; the checkpoint's network "
              f"{model.policy_kwargs['net_arch']} is kept")
    model.set_random_seed(args.seed)
    return model


def main(args: Args) -> dict[str, Any]:
    """Train, save and evaluate; returns the summary (also written to summary.json)."""
    validate(args)
    out = Path(args.out) if args.out is not None else default_out()
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.torch_threads)
    config = env_config(args)
    tensorboard_log = str(out / "tb")

    run_config = {
        "args": _jsonable(asdict(args)),
        "out": str(out),
        "env_config": config,
        "command": [sys.executable, *sys.argv],
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "stable_baselines3": __import__("stable_baselines3").__version__,
                     "gymnasium": gym.__version__, "sgaps": sgaps_env.__version__},
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs",
    }

    env = make_vec_env(config, args.num_envs, out / "monitor", "train", args.reward_scale)
    eval_env = None
    try:
        if args.resume is not None:
            model = load_for_resume(args, config, env, tensorboard_log)
        else:
            model = PPO("MultiInputPolicy", env, device="cpu", seed=args.seed, verbose=args.verbose,
                        tensorboard_log=tensorboard_log, policy_kwargs={"net_arch": list(args.net_arch)},
                        **ppo_options(args))
        setattr(model, ENV_CONFIG_ATTRIBUTE, config)
        start_timesteps = int(model.num_timesteps)
        run_config["resumed_from"] = str(args.resume) if args.resume is not None else None
        run_config["start_timesteps"] = start_timesteps
        (out / "config.json").write_text(json.dumps(run_config, indent=2) + "\n")

        stats = EpisodeStatsCallback()
        callbacks: list[BaseCallback] = [stats]
        if args.checkpoint_freq > 0:
            callbacks.append(CheckpointCallback(max(args.checkpoint_freq // args.num_envs, 1), str(out / "checkpoints"),
                                                name_prefix="ppo_player"))
        evaluator = None
        if args.eval_freq > 0:
            eval_env = DummyVecEnv([partial(make_env, config, str(out / "monitor" / "eval"))])
            evaluator = SGAPSEvalCallback(eval_env, eval_seed=args.eval_seed, n_eval_episodes=args.eval_episodes,
                                          eval_freq=max(args.eval_freq // args.num_envs, 1),
                                          best_model_save_path=str(out), log_path=str(out),
                                          deterministic=args.eval_deterministic,
                                          verbose=args.verbose)
            callbacks.append(evaluator)

        print(f"training PPO on {config['env_id']} stage {args.stage}: {args.total_timesteps:,} steps, "
              f"{args.num_envs} env(s), {args.sample_count} {args.color} pixels ('{args.pattern}'), "
              f"{'resuming at ' + format(start_timesteps, ',') + ' steps, ' if args.resume else ''}writing to {out}")
        interrupted = False
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # one in-process eval env beside SubprocVecEnv training envs is intended: silence SB3's type warning
                warnings.filterwarnings("ignore", message="Training and eval env are not of the same type")
                model.learn(args.total_timesteps, callback=CallbackList(callbacks),
                            reset_num_timesteps=args.resume is None, tb_log_name="PPO", progress_bar=args.progress)
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: saving final_model.zip")
        wall = time.perf_counter() - start
        model.save(out / "final_model.zip")
    finally:
        for vec_env in (env, eval_env):
            if vec_env is not None:
                try:
                    vec_env.close()
                except (EOFError, OSError):  # after Ctrl-C the worker processes may be gone already
                    pass

    trained = int(model.num_timesteps) - start_timesteps
    buffer = list(model.ep_info_buffer or [])
    summary: dict[str, Any] = {
        "out": str(out),
        "interrupted": interrupted,
        "start_timesteps": start_timesteps,
        "num_timesteps": int(model.num_timesteps),
        "trained_timesteps": trained,
        "wall_seconds": wall,
        "steps_per_second": trained / wall if wall > 0 else float("nan"),
        "training_episodes": stats.episodes,
        "training_flags": stats.flags,
        "training_best_furthest_x": stats.best_furthest_x,
        "last_100_episodes": {
            "reward_mean": float(np.mean([e["r"] for e in buffer])) if buffer else None,
            "furthest_x_mean": float(np.mean([e["furthest_x"] for e in buffer])) if buffer else None,
            "flag_share": float(np.mean([bool(e["flag_get"]) for e in buffer])) if buffer else None,
        },
        "evaluations": evaluator.history if evaluator is not None else [],
        "final_evaluation": {},
    }
    print(f"trained {trained:,} steps in {wall:.0f} s ({summary['steps_per_second']:.0f} steps/s), "
          f"{stats.episodes} episodes, {stats.flags} flags, best furthest x {stats.best_furthest_x}")
    if args.final_eval_episodes > 0 and not interrupted:
        for name in ("final_model", "best_model"):
            path = out / f"{name}.zip"
            if not path.exists():
                continue
            summary["final_evaluation"][name] = {}
            for mode, deterministic in (("deterministic", True), ("sampled", False)):
                result = evaluate_model(path, args.final_eval_episodes, args.eval_seed, deterministic=deterministic)
                summary["final_evaluation"][name][mode] = result
                print(f"{name}, {mode}: {args.final_eval_episodes} episodes (seeds {args.eval_seed}..): furthest x "
                      f"mean {result['furthest_x_mean']:.0f}, median {result['furthest_x_median']:.0f}, max "
                      f"{result['furthest_x_max']}, flag {result['flag_share']:.0%}, "
                      f"reward {result['reward_mean']:.0f}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out.resolve()}")
    return summary


if __name__ == "__main__":
    sys.exit(130 if run_script(main, Args, __doc__)["interrupted"] else 0)  # 130: stopped by Ctrl-C (final_model.zip is saved)
