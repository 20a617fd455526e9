"""Record play of SGAPS-SMB-v0 into a session file: `python agents/collect.py --help`.

A player presses the buttons, a sampler chooses where each frame is sampled, and every episode
becomes one session (observations, actions, rewards and the true frames as ground truth) in the
session file described in docs/session_format.md.

Sessions are named and seeded from the arguments, so rerunning the same command skips what is
already recorded (resume), and asking for more episodes or other stages appends. A kill at any
moment (even SIGKILL) leaves every recorded session readable; Ctrl-C stops after the sessions in
progress are discarded and everything finished is indexed.

    python agents/collect.py --player heuristic --stages 1-1 1-2 --episodes 20 --workers 2
    python agents/collect.py --stages all --frames 20000 --output data/all.h5
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import fcntl
import hashlib
import inspect
import json
import multiprocessing
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm import tqdm

from agents.players import PLAYERS, make_player
from sgaps_env import SGAPSSuperMarioBrosEnv, __version__, stage_names
from sgaps_env.buttons import BUTTON_SETS
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.coords import COLOR_CHANNELS, PATTERNS
from sgaps_env.rollout import Rollout
from sgaps_env.sampler import PatternSampler
from sgaps_env.session_file import (SessionFile, SessionFileError, SessionRecorder, checkpoint_key_for, check_name,
                                    list_sessions, write_shard)


@dataclass
class Args:
    """Options of the recorder."""

    player: Literal[*sorted(PLAYERS)] = "run_right"
    """who presses the buttons"""
    player_option: list[str] = field(default_factory=list)
    """player keyword arguments as KEY=VALUE (VALUE parsed as JSON when it can be), e.g. --player-option jitter=0.05"""
    pattern: Literal[*sorted(PATTERNS)] = "random"
    """where each frame is sampled: a fixed pattern ('random' and 'stratified' are redrawn every frame)"""
    stages: list[str] = field(default_factory=lambda: ["1-1"])
    """stages to record, 'W-S' each; 'all' means the 32 stages, 'train-worlds' the 16 of worlds 1-4 (the only
    ones a reconstructor may train on), 'held-out-worlds' those of worlds 5-8; 'game' means the whole game from
    1-1 (episodes end at game over)"""
    episodes: int = 4
    """episodes per stage (ignored when --frames is given)"""
    frames: int | None = None
    """instead of --episodes: record episodes until each stage has at least this many steps (the episodes in
    progress at that point are completed)"""
    max_steps: int = 4000
    """steps after which an episode is cut off (recorded as truncated)"""
    sample_count: int = 500
    """pixels sampled per frame"""
    color: Literal[*sorted(COLOR_CHANNELS)] = "gray"
    """colour of the sampled values"""
    frame_skip: int = 4
    """NES frames per step"""
    buttons: Literal[*sorted(BUTTON_SETS)] = "simple"
    """button set"""
    noop_max: int = 30
    """largest number of random no-op frames at reset (the emulator is deterministic: this is where seeds make
    episodes differ)"""
    sticky: float = 0.0
    """per-frame probability of repeating the previous frame's buttons (sticky actions)"""
    workers: int = 1
    """episodes recorded at once: local worker processes, or Ray tasks in flight with --backend ray"""
    backend: Literal["local", "ray"] = "local"
    """where episodes run: 'local' processes, or 'ray' tasks (a local Ray instance, or the cluster at --address);
    each task writes its session's shard under OUTPUT.shards/, which a cluster must share, and the driver indexes it"""
    address: str | None = None
    """with --backend ray: the Ray cluster to join (e.g. 'auto' or 'ray://head:10001'); None starts Ray on this
    machine with --workers CPUs"""
    seed: int = 0
    """base seed; each episode's seed is derived from it, the stage and the episode number"""
    output: Path = Path("data/sessions.h5")
    """session file (index) to create or extend; shards go beside it in OUTPUT.shards/"""
    checkpoint_key: str | None = None
    """group the sessions under this key instead of the default 'smb1-W-S' (or 'smb1-all' for the whole game)"""
    store_frames: bool = True
    """store the full true frames (lossless; they are the ground truth)"""
    store_ram: bool = False
    """store the 2048-byte RAM each frame was drawn from"""
    progress: bool = True
    """show a progress bar"""


# --- the plan: which sessions, with which seeds -----------------------------------------------------


def expand_stages(stages: list[str]) -> list[str | None]:
    """Stage names as given on the command line -> 'W-S' strings (None for the whole game)."""
    return stage_names(stages, allow_game=True)


def parse_player_options(options: list[str]) -> dict[str, Any]:
    parsed = {}
    for option in options:
        key, separator, value = option.partition("=")
        if not separator or not key.isidentifier():
            raise ValueError(f"--player-option {option!r} must look like KEY=VALUE, e.g. jitter=0.05")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


@dataclass(frozen=True)
class EpisodeTask:
    """Everything a worker needs to record one episode."""

    env_config: dict
    player: str
    player_options: dict
    pattern: str
    checkpoint_key: str
    session_id: str
    seed: int
    episode: int
    max_steps: int
    store_frames: bool
    store_ram: bool
    shard: str
    attrs: dict


def episode_seed(base_seed: int, stage: str | None, episode: int) -> int:
    """A 32-bit seed for one episode, distinct across base seeds, stages and episode numbers."""
    stage_code = 0 if stage is None else int(stage[0]) * 10 + int(stage[2])
    return int(np.random.SeedSequence([base_seed, stage_code, episode]).generate_state(1)[0])


def config_tag(env_config: dict, args: Args, player_options: dict) -> str:
    """Short hash of what makes episodes of one configuration: part of every session id."""
    what = {"env": env_config, "player": args.player, "player_options": player_options, "pattern": args.pattern,
            "seed": args.seed, "max_steps": args.max_steps}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:8]


def make_env_config(args: Args, stage: str | None) -> dict:
    """The env configuration of a stage; building the env once checks every argument early."""
    env = SGAPSSuperMarioBrosEnv(stage=stage, sample_count=args.sample_count, color=args.color,
                                 frame_skip=args.frame_skip, buttons=args.buttons, noop_max=args.noop_max,
                                 repeat_action_probability=args.sticky)
    env.close()
    return env.config


# --- recording one episode (runs in a worker) --------------------------------------------------------

_ENVS: dict[str, SGAPSSuperMarioBrosEnv] = {}
_STEPS_DONE = None  # shared step counter for the progress bar, set in each worker


def _env_for(config: dict, store_frames: bool) -> SGAPSSuperMarioBrosEnv:
    key = json.dumps(config, sort_keys=True) + str(store_frames)
    if key not in _ENVS:
        _ENVS[key] = SGAPSSuperMarioBrosEnv(**config, return_frame=store_frames)
    return _ENVS[key]


#: Player keyword -> the env configuration key it is filled from, when the player takes it.
_PLAYER_ENV_KEYWORDS = {"button_set": "buttons", "frame_skip": "frame_skip",
                        "repeat_action_probability": "repeat_action_probability"}


def _build_player(name: str, options: dict, env_config: dict):
    """The player ``name`` with ``options``, told the env's button set (and frame skip, sticky actions) if it asks."""
    accepted = inspect.signature(PLAYERS[name]).parameters
    filled = {keyword: env_config[key] for keyword, key in _PLAYER_ENV_KEYWORDS.items()
              if keyword in accepted and keyword not in options and key in env_config}
    return make_player(name, **filled, **options)


def record_episode(task: EpisodeTask, shards_root: str | None) -> dict:
    """Play one episode and, unless ``shards_root`` is None, write it as a complete shard; returns a summary.

    With ``shards_root=None`` nothing is recorded: the same episode is only played (for benchmarks).
    """
    recording = shards_root is not None
    env = _env_for(task.env_config, task.store_frames and recording)
    player = _build_player(task.player, task.player_options, task.env_config)
    sampler = PatternSampler(task.pattern, env.sample_count)
    recorder = (SessionRecorder(task.checkpoint_key, task.session_id, task.attrs, task.store_frames, task.store_ram)
                if recording else None)
    store_ram = recording and task.store_ram

    rollout = Rollout(env, player, sampler, seed=task.seed, max_steps=task.max_steps)
    started = time.perf_counter()
    reported = 0  # steps added to the shared progress counter
    for step in rollout:
        _stop_if_asked()
        if recording:
            ram = env.frame_ram if store_ram else None
            if step.step == 0:
                recorder.add(step.observation, step.info, ram=ram)
            else:
                recorder.add(step.observation, step.info, step.buttons, step.reward, step.terminated, step.truncated,
                             time.perf_counter() - started, ram=ram)
        if _STEPS_DONE is not None and (step.done or step.step - reported >= 32):
            with _STEPS_DONE.get_lock():
                _STEPS_DONE.value += step.step - reported
            reported = step.step
    outcome = rollout.summary
    summary = {"checkpoint_key": task.checkpoint_key, "session_id": task.session_id, "steps": outcome.steps,
               "flag_get": outcome.flag_get, "furthest_x": outcome.furthest_x}
    if recording:
        data = recorder.finish(terminated=outcome.terminated, truncated=outcome.truncated, flag_get=outcome.flag_get,
                               furthest_x=outcome.furthest_x, final_world=outcome.final_world,
                               final_stage=outcome.final_stage, emulated_frames=outcome.emulated_frames,
                               wall_seconds=time.perf_counter() - started)
        write_shard(Path(shards_root) / task.shard, data)
    summary["worker_seconds"] = time.perf_counter() - started  # playing, recording and writing the shard
    return summary


#: Set by Ctrl-C while recording; the recorder stops at the next safe point (between steps, between episodes).
_CTRL_C = threading.Event()


def _stop_if_asked() -> None:
    """Raise KeyboardInterrupt here, at a safe point, if Ctrl-C was pressed. Raised wherever the signal landed, it
    could interrupt h5py inside its global lock (writing a shard or the index) and leave the lock held, and the
    recorder would then hang when it reads the index to report what it kept."""
    if _CTRL_C.is_set():
        raise KeyboardInterrupt


def die_with_parent() -> None:
    """Make this worker process ignore Ctrl-C (the parent handles it) and die with its parent (Linux),
    so a killed parent leaves no worker behind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _worker_init(counter) -> None:
    global _STEPS_DONE
    _STEPS_DONE = counter
    die_with_parent()


# --- where episodes run -----------------------------------------------------------------------------


class _ProcessBackend:
    """Episodes in local worker processes (``concurrent.futures`` with the spawn context)."""

    def __init__(self, workers: int, counter):
        self.executor = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init, initargs=(counter,))

    def submit(self, task: EpisodeTask, shards_root: str):
        return self.executor.submit(record_episode, task, shards_root)

    def wait(self, pending, timeout: float) -> list:
        done, _ = concurrent.futures.wait(pending, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        return list(done)

    def result(self, handle) -> dict:
        return handle.result()

    def close(self) -> None:
        self.executor.shutdown()

    def abort(self, pending) -> None:
        kill_workers(self.executor)


class _RayBackend:
    """Episodes as Ray tasks, on a Ray instance started here or on the cluster at ``address``."""

    def __init__(self, workers: int, address: str | None):
        try:
            import ray
        except ImportError:
            raise ValueError("--backend ray needs Ray: install it with `pip install -e '.[ray]'`") from None
        from agents import collect as this_module  # by reference, so workers import it rather than unpickle __main__

        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR")
        self.record = ray.remote(num_cpus=1)(this_module.record_episode)

    def submit(self, task: EpisodeTask, shards_root: str):
        return self.record.remote(task, shards_root)

    def wait(self, pending, timeout: float) -> list:
        done, _ = self.ray.wait(list(pending), num_returns=1, timeout=timeout)
        return done

    def result(self, handle) -> dict:
        return self.ray.get(handle)

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()

    def abort(self, pending) -> None:
        for handle in pending:
            self.ray.cancel(handle, force=True)
        self.close()


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class StagePlan:
    stage: str | None
    checkpoint_key: str
    env_config: dict
    tag: str
    next_episode: int = 0
    recorded_steps: int = 0
    wanted_episodes: int | None = None
    wanted_steps: int | None = None
    in_flight: int = 0
    in_flight_steps: int = 0

    def session_id(self, episode: int, args: Args) -> str:
        return f"{args.player}-{args.pattern}-{self.tag}-ep{episode:05d}"

    def expected_steps(self, max_steps: int) -> int:
        """A guess of an episode's length, for planning --frames with several workers."""
        done = self.next_episode - self.in_flight
        return max(1, min(max_steps, self.recorded_steps // done if done > 0 else 300))


def episode_task(args: Args, plan: StagePlan, episode: int, player_options: dict, shard: str = "") -> EpisodeTask:
    """The task that records episode number ``episode`` of ``plan``'s stage (the same for every run)."""
    seed = episode_seed(args.seed, plan.stage, episode)
    session_id = plan.session_id(episode, args)
    attrs = {"env_config": plan.env_config, "player": args.player, "player_options": player_options,
             "sampler": PatternSampler(args.pattern, args.sample_count).name, "pattern": args.pattern,
             "seed": seed, "episode": episode, "stage": plan.stage or "game", "base_seed": args.seed,
             "config_tag": plan.tag, "max_steps": args.max_steps, "recorder": f"agents/collect.py {__version__}"}
    return EpisodeTask(plan.env_config, args.player, player_options, args.pattern, plan.checkpoint_key, session_id,
                       seed, episode, args.max_steps, args.store_frames, args.store_ram, shard, attrs)


def stage_plan(args: Args, stage: str | None, player_options: dict) -> StagePlan:
    """What recording ``stage`` under ``args`` means: its key, env configuration and session naming."""
    config = make_env_config(args, stage)
    plan = StagePlan(stage, args.checkpoint_key or checkpoint_key_for(stage), config,
                     config_tag(config, args, player_options))
    if args.frames is not None:
        plan.wanted_steps = args.frames
    else:
        plan.wanted_episodes = args.episodes
    return plan


def _lock(session_file: SessionFile):
    path = session_file.path.with_name(session_file.path.name + ".lock")
    try:
        lock = open(path, "w")
    except OSError as error:
        raise SessionFileError(f"cannot write {path} beside {session_file.path} ({error.strerror}; nothing was "
                               "changed): the recorder needs a writable folder, so choose another --output or make "
                               "this one writable") from error
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SessionFileError(f"another collect.py is writing to {session_file.path}: wait for it to finish, "
                               "or record into another --output") from None
    return lock


def validate(args: Args) -> None:
    require_at_least(args, ("episodes", "max_steps", "sample_count", "frame_skip", "workers"))
    require_at_least(args, ("frames",), none_means="to record --episodes")
    if not 0.0 <= args.sticky < 1.0:
        raise ValueError(f"--sticky must be in [0, 1), got {args.sticky}")
    if args.checkpoint_key is not None:
        check_name("--checkpoint-key", args.checkpoint_key)
    if args.address is not None and args.backend != "ray":
        raise ValueError(f"--address {args.address!r} names a Ray cluster: add --backend ray, or leave --address out")


def main(args: Args) -> dict:
    """Record what ``args`` asks for that the file does not hold yet; returns a summary."""
    validate(args)
    stages = expand_stages(args.stages)
    player_options = parse_player_options(args.player_option)
    plans = [stage_plan(args, stage, player_options) for stage in stages]
    _build_player(args.player, player_options, plans[0].env_config)  # a bad player option fails now, not in a worker
    session_file = SessionFile(args.output, create=True)
    lock = _lock(session_file)
    recovered = session_file.recover()
    if recovered:
        print(f"recovered {len(recovered)} finished session(s) that an interrupted run had not indexed")

    # what is already recorded: sessions are numbered, so episodes whose session exists are skipped
    existing_steps = {(session.checkpoint_key, session.session_id): len(session) - 1  # rows - 1: the reset row
                      for session in list_sessions(session_file.path)}
    skipped = 0

    def skip_recorded(plan: StagePlan) -> None:
        nonlocal skipped
        while (plan.checkpoint_key, plan.session_id(plan.next_episode, args)) in existing_steps:
            plan.recorded_steps += existing_steps[(plan.checkpoint_key, plan.session_id(plan.next_episode, args))]
            plan.next_episode += 1
            skipped += 1

    def tasks():
        """The first plan that needs another episode (counting those in flight), or None when all are satisfied."""
        for plan in plans:
            skip_recorded(plan)
            if plan.wanted_steps is not None:
                if plan.recorded_steps + plan.in_flight_steps < plan.wanted_steps:
                    return plan
            elif plan.next_episode < plan.wanted_episodes:
                return plan
        return None

    def make_task(plan: StagePlan) -> EpisodeTask:
        episode = plan.next_episode
        plan.next_episode += 1
        session_id = plan.session_id(episode, args)
        shard = session_file.shard_path(plan.checkpoint_key, session_id).relative_to(session_file.shards_dir)
        return episode_task(args, plan, episode, player_options, shard.as_posix())

    for plan in plans:
        skip_recorded(plan)
    total = (sum(max(0, plan.wanted_steps - plan.recorded_steps) for plan in plans) if args.frames is not None
             else None)
    bar = tqdm(total=total, desc="recording", unit="step", disable=not args.progress, smoothing=0.1)
    recorded: list[dict] = []
    started = time.perf_counter()
    counter = multiprocessing.get_context("spawn").Value("q", 0)

    def finished(plan: StagePlan, summary: dict) -> None:
        session_file.index_written(summary["checkpoint_key"], summary["session_id"])
        plan.recorded_steps += summary["steps"]
        recorded.append(summary)

    interrupted = False
    _CTRL_C.clear()
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may handle signals
    previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: _CTRL_C.set()) if in_main_thread else None
    try:
        if args.workers == 1 and args.backend == "local":
            _worker_init_in_process(counter)
            while (plan := tasks()) is not None:
                finished(plan, record_episode(make_task(plan), str(session_file.shards_dir)))
                _stop_if_asked()
                bar.update(counter.value - bar.n)
                bar.set_postfix(sessions=len(recorded))
        else:
            backend = (_RayBackend(args.workers, args.address) if args.backend == "ray"
                       else _ProcessBackend(args.workers, counter))
            pending: dict = {}
            try:
                while True:
                    while len(pending) < args.workers and (plan := tasks()) is not None:
                        guess = plan.expected_steps(args.max_steps)
                        task = make_task(plan)
                        plan.in_flight, plan.in_flight_steps = plan.in_flight + 1, plan.in_flight_steps + guess
                        pending[backend.submit(task, str(session_file.shards_dir))] = (plan, guess)
                    if not pending:
                        break
                    # the timeout only refreshes the progress bar while long episodes run
                    for handle in backend.wait(pending, timeout=0.5):
                        plan, guess = pending.pop(handle)
                        plan.in_flight, plan.in_flight_steps = plan.in_flight - 1, plan.in_flight_steps - guess
                        finished(plan, backend.result(handle))
                    _stop_if_asked()
                    # local workers count steps as they play; Ray tasks report them when their episode ends
                    bar.update(max(counter.value, sum(summary["steps"] for summary in recorded)) - bar.n)
                    bar.set_postfix(sessions=len(recorded))
            except BaseException:
                backend.abort(pending)
                raise
            backend.close()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous_handler)
        bar.close()
        _worker_init_in_process(None)
        lock.close()

    seconds = time.perf_counter() - started
    steps = sum(summary["steps"] for summary in recorded)
    result = {"output": str(session_file.path), "recorded_sessions": len(recorded), "recorded_steps": steps,
              "skipped_sessions": skipped, "seconds": seconds,
              "worker_seconds": sum(summary["worker_seconds"] for summary in recorded),
              "steps_per_second": steps / seconds if seconds else 0.0,
              "interrupted": interrupted, "indexed_sessions": len(session_file)}
    verb = "stopped by Ctrl-C after recording" if interrupted else "recorded"
    print(f"{verb} {len(recorded)} session(s), {steps} steps in {seconds:.1f} s ({result['steps_per_second']:.0f} "
          f"steps/s); skipped {skipped} already in the file; {len(session_file)} session(s) in {session_file.path}")
    if interrupted:
        print("episodes in progress were discarded; rerun the same command to resume")
    return result


def kill_workers(executor: concurrent.futures.ProcessPoolExecutor) -> None:
    """Stop at once (Ctrl-C or a failed episode): the episodes in progress are discarded, not waited for."""
    workers = list((getattr(executor, "_processes", None) or {}).values())  # Python 3.14: executor.kill_workers()
    executor.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.kill()


def _worker_init_in_process(counter) -> None:
    global _STEPS_DONE
    _STEPS_DONE = counter


if __name__ == "__main__":
    sys.exit(130 if run_script(main, Args, __doc__)["interrupted"] else 0)
