"""How many live sessions the server sustains on this machine, and what each costs: `--help` for options.

The server runs as ``python -m sgaps_server`` in its own process on 127.0.0.1 (no recording, so the disk
is not measured). Clients run in --client-processes other processes, each session a thread that replays
frames played once at the start (the heuristic player on --stages; sessions alternate stages) through
``agents.stream.StreamClient``: every frame is sampled at the coordinates the server chose, exactly as
the env samples, and paced at --fps on an absolute schedule (a late frame is sent at once; the schedule
does not slip) that starts at a random phase of one frame period per session (players do not start in
lockstep; sessions sending on the same instant would all queue behind each other). Replaying played frames instead of emulating keeps the clients' CPU small, so the numbers
are the server's.

For each number of sessions in --sessions, for --seconds:

- end-to-end latency: ``FrameData`` sent -> next ``UVCoordinates`` received, at the client, p50 / p99;
- fps achieved per session, bytes per frame up and down, mean batch size (from ``/metrics``);
- CPU of the server process (user + system, from /proc) per session, as a share of one core.

A count of sessions is *sustained* when every session keeps >= 95% of --fps and the p99 latency is
<= --p99-target-ms. Then one session streams --psnr-frames frames with the truth, and its live PSNR per
frame is compared with ``models.policy_replay.replay_offline`` of the same frames with the session's seed
(they must agree within 0.1 dB). Writes --out/benchmark_server.json and a plot of latency against sessions.

    python experiments/benchmark_server.py                       # about 3 minutes on 2 cores
    python experiments/benchmark_server.py --policy stratified --sessions 4 6 8 10
    python experiments/benchmark_server.py --reconstructor spt --policy stratified --processes 0   # batched network
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import sgaps_env  # noqa: F401  (registers SGAPS-SMB-v0)
from agents.players import make_player
from agents.stream import StreamClient
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.coords import extract_pixels
from sgaps_env.rollout import Rollout
from sgaps_env.sampler import PatternSampler
from sgaps_server.config import RECONSTRUCTORS, SERVER_POLICIES

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Args:
    """Options of the server benchmark."""

    sessions: list[int] = field(default_factory=lambda: [1, 2, 4, 6, 8])
    """numbers of concurrent sessions to measure, one after another"""
    seconds: float = 15.0
    """how long each number of sessions streams"""
    fps: float = 15.0
    """frames per second each session sends (15: the env's frame_skip 4)"""
    p99_target_ms: float = 50.0
    """the p99 latency a sustained count must keep"""
    stages: list[str] = field(default_factory=lambda: ["1-1", "5-1"])
    """stages whose play the sessions replay (alternating)"""
    frames: int = 300
    """frames played per stage (a session loops over its stage's frames)"""
    sample_count: int = 500
    color: Literal["rgb", "gray"] = "rgb"
    reconstructor: Literal[*RECONSTRUCTORS] = "tiles"
    policy: Literal[*SERVER_POLICIES] = "uncertainty"
    processes: int = 2
    """the server's worker processes (--processes of sgaps_server; 0: sessions in the server's own process)"""
    max_batch: int = 32
    batch_deadline_ms: float = 3.0
    client_processes: int = 8
    """processes the client sessions are spread over (one per session up to this many)"""
    psnr_frames: int = 150
    """frames of the live-versus-offline PSNR check (0: skip it)"""
    out: Path = Path("outputs/benchmark_server")


# --- the server, in its own process ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``python -m sgaps_server`` on a free port; its CPU time read from /proc."""

    def __init__(self, args: Args):
        self.port = _free_port()
        command = [sys.executable, "-m", "sgaps_server", "--port", str(self.port), "--record", "None",
                   "--reconstructor", args.reconstructor, "--policy", args.policy,
                   "--sample-count", str(args.sample_count), "--target-fps", str(args.fps),
                   "--processes", str(args.processes),
                   "--max-batch", str(args.max_batch), "--batch-deadline-ms", str(args.batch_deadline_ms),
                   "--max-sessions", str(max(args.sessions) + 2)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.process.stdout.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the server did not answer /healthz within 120 s")

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/stream"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> tuple[float, float]:
        """User + system CPU, in seconds, of the server's main process (network, decoding, checks) and of its
        worker processes (reconstruction and policy)."""
        def cpu(pid: int) -> float:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return 0.0
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        return cpu(self.process.pid), sum(cpu(child) for child in _children(self.process.pid))

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"{self.http_url}/metrics", timeout=10) as response:
            text = response.read().decode()
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else float("nan")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


# --- the clients -----------------------------------------------------------------------------------------------

#: Played frames per stage, ``(frames, states, masks)``; set before the client processes fork.
_PLAYS: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []


def play(stage: str, frames: int, sample_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    env = gym.make("SGAPS-SMB-v0", stage=stage, sample_count=sample_count, color="rgb", return_frame=True)
    rows = []
    try:
        for step in Rollout(env, make_player("heuristic"), PatternSampler("random", sample_count), seed=0,
                            max_steps=frames - 1, episodes=1_000):
            rows.append((step.info["frame"].copy(), step.observation["state"].copy(),
                         step.observation["state_mask"].copy()))
            if len(rows) == frames:
                break
    finally:
        env.close()
    return tuple(np.stack(column) for column in zip(*rows))


def _session(url: str, stage_index: int, color: str, fps: float, seconds: float, start_at: float, results: list,
             truth_frames: int = 0) -> None:
    frames, states, masks = _PLAYS[stage_index]
    client = StreamClient(url, color=color, checkpoint_key="smb1-bench", timeout_s=30)
    try:
        coords = client.open()
        while time.time() < start_at:
            time.sleep(0.001)
        began = time.perf_counter()
        t = 0
        while True:
            due = began + t / fps if fps > 0 else 0
            now = time.perf_counter()
            if truth_frames:
                if t >= truth_frames:
                    break
            elif now - began >= seconds:
                break
            if due > now:
                time.sleep(due - now)
            index = t % len(frames)
            observation = {"pixels": extract_pixels(frames[index], coords, color), "state": states[index],
                           "state_mask": masks[index]}
            coords = client.exchange(observation, frames[index] if truth_frames else None)
            t += 1
        elapsed = time.perf_counter() - began
        results.append({"session_id": client.session_id, "frames": len(client.stats), "seconds": elapsed,
                        "latency_ms": [s.latency_ms for s in client.stats],
                        "uplink": [s.uplink_bytes for s in client.stats],
                        "downlink": [s.downlink_bytes for s in client.stats]})
    except Exception as error:  # noqa: BLE001 - reported in the results
        results.append({"error": f"{type(error).__name__}: {error}"})
    finally:
        client.close()


def _client_process(url: str, sessions: list[tuple[int, float]], color: str, fps: float, seconds: float,
                    start_at: float) -> list[dict]:
    """The ``(stage index, start delay in seconds)`` sessions of one client process, one thread each."""
    results: list[dict] = []
    threads = [threading.Thread(target=_session, args=(url, index, color, fps, seconds, start_at + delay, results))
               for index, delay in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def measure(server: ServerProcess, sessions: int, args: Args) -> dict:
    """Stream ``sessions`` sessions for ``args.seconds``; latency, fps, bytes, CPU and batch size."""
    # players do not press start together: each session's frame clock starts at a random phase of one frame
    phases = np.random.default_rng(sessions).uniform(0.0, 1.0 / args.fps if args.fps > 0 else 0.0, sessions)
    stage_of = [(i % len(_PLAYS), float(phases[i])) for i in range(sessions)]
    processes = min(args.client_processes, sessions)
    groups = [stage_of[i::processes] for i in range(processes)]
    batch_sum, batch_count = server.metric("sgaps_batch_size_sum"), server.metric("sgaps_batch_size_count")
    start_at = time.time() + 2.0 + 0.2 * sessions  # every session opened before the clock starts
    cpu_before = None
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(len([g for g in groups if g]), mp_context=context) as pool:
        futures = [pool.submit(_client_process, server.ws_url, group, args.color, args.fps, args.seconds, start_at)
                   for group in groups if group]
        while time.time() < start_at + float(phases.max()):
            time.sleep(0.01)
        cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
        results = [row for future in futures for row in future.result()]
    main_after, workers_after = server.cpu_seconds()
    main_cpu, worker_cpu = main_after - cpu_before[0], workers_after - cpu_before[1]
    cpu = main_cpu + worker_cpu
    wall = time.perf_counter() - wall_before
    errors = [row["error"] for row in results if "error" in row]
    if errors:
        raise RuntimeError(f"{len(errors)} session(s) failed: {errors[:3]}")
    latency = np.concatenate([row["latency_ms"] for row in results])
    fps = [row["frames"] / row["seconds"] for row in results]
    batches = server.metric("sgaps_batch_size_count") - batch_count
    row = {"sessions": sessions, "frames": int(sum(r["frames"] for r in results)),
           "fps_min": round(min(fps), 2), "fps_mean": round(float(np.mean(fps)), 2),
           "latency_p50_ms": round(float(np.percentile(latency, 50)), 2),
           "latency_p99_ms": round(float(np.percentile(latency, 99)), 2),
           "uplink_bytes_mean": round(float(np.mean(np.concatenate([r["uplink"] for r in results]))), 1),
           "downlink_bytes_mean": round(float(np.mean(np.concatenate([r["downlink"] for r in results]))), 1),
           "downlink_bytes_max": int(np.max(np.concatenate([r["downlink"] for r in results]))),
           "batch_mean": round((server.metric("sgaps_batch_size_sum") - batch_sum) / batches, 2) if batches else None,
           "server_cpu_cores": round(cpu / wall, 3), "cpu_per_session_cores": round(cpu / wall / sessions, 3),
           "main_process_ms_per_frame": round(main_cpu * 1000 / max(1, sum(r["frames"] for r in results)), 2),
           "workers_ms_per_frame": round(worker_cpu * 1000 / max(1, sum(r["frames"] for r in results)), 2)}
    row["sustained"] = bool(row["fps_min"] >= 0.95 * args.fps and row["latency_p99_ms"] <= args.p99_target_ms)
    return row


def live_versus_offline(server: ServerProcess, args: Args) -> dict:
    """One session with truth; its per-frame PSNR against the offline replay of the same frames and seed."""
    from models.policy_replay import replay_offline
    from sgaps_server.config import ServerConfig
    from sgaps_server.host import SessionHost

    results: list[dict] = []
    count = min(args.psnr_frames, len(_PLAYS[0][0]))
    _session(server.ws_url, 0, args.color, 0, 0, time.time(), results, truth_frames=count)
    if "error" in results[0]:
        raise RuntimeError(results[0]["error"])
    session_id = results[0]["session_id"]
    with urllib.request.urlopen(f"{server.http_url}/api/sessions/{session_id}", timeout=10) as response:
        detail = json.loads(response.read())
    live = np.array([np.inf if value is None else value for _, value in detail["psnr"]])
    frames, states, masks = (array[:count] for array in _PLAYS[0])
    host = SessionHost(ServerConfig(reconstructor=args.reconstructor, policy=args.policy,
                                    sample_count=args.sample_count, record=None))
    reconstructor = host.new_reconstructor()  # what the server built for the session
    policy = host.new_policy(reconstructor)
    rows, _ = replay_offline(policy, reconstructor, frames, states, masks, args.color, seed=detail["seed"],
                             with_ssim=False)
    offline = np.array([row["psnr"] for row in rows])
    difference = np.where(np.isinf(live) & np.isinf(offline), 0.0, np.abs(live - offline))
    return {"frames": count, "live_psnr_mean": round(float(np.mean(live[np.isfinite(live)])), 3),
            "offline_psnr_mean": round(float(np.mean(offline[np.isfinite(offline)])), 3),
            "max_abs_difference_db": float(np.max(difference)), "within_0.1_db": bool(np.max(difference) <= 0.1)}


def plot(rows: list[dict], args: Args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    counts = [row["sessions"] for row in rows]
    axis.plot(counts, [row["latency_p50_ms"] for row in rows], "o-", label="p50")
    axis.plot(counts, [row["latency_p99_ms"] for row in rows], "s-", label="p99")
    axis.axhline(args.p99_target_ms, color="gray", linestyle="--", label=f"p99 target {args.p99_target_ms:g} ms")
    axis.set_xlabel(f"concurrent sessions at {args.fps:g} fps")
    axis.set_ylabel("end-to-end latency (ms)")
    axis.set_title(f"SGAPS server, {args.reconstructor} + {args.policy}, {os.cpu_count()} CPU cores")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(args: Args) -> dict:
    require_at_least(args, ["frames", "client_processes", "max_batch"])
    require_at_least(args, ["processes"], minimum=0)
    if not args.sessions or min(args.sessions) < 1:
        raise ValueError(f"--sessions must list counts of at least 1, got {args.sessions}")
    args.out.mkdir(parents=True, exist_ok=True)
    for stage in tqdm(args.stages, desc="playing the stages once"):
        _PLAYS.append(play(stage, args.frames, args.sample_count))
    server = ServerProcess(args)
    rows = []
    try:
        for sessions in tqdm(sorted(args.sessions), desc="session counts"):
            row = measure(server, sessions, args)
            rows.append(row)
            tqdm.write(f"{sessions:3d} sessions: fps min {row['fps_min']:.1f}, latency p50 {row['latency_p50_ms']:.1f} / "
                       f"p99 {row['latency_p99_ms']:.1f} ms, batch {row['batch_mean']}, server CPU "
                       f"{row['server_cpu_cores']:.2f} cores ({row['cpu_per_session_cores']:.3f} per session), "
                       f"up {row['uplink_bytes_mean']:.0f} B, down {row['downlink_bytes_mean']:.0f} B; CPU per frame: "
                       f"main {row['main_process_ms_per_frame']} ms, workers {row['workers_ms_per_frame']} ms"
                       + ("  sustained" if row["sustained"] else ""))
        check = live_versus_offline(server, args) if args.psnr_frames else None
    finally:
        server.stop()
    sustained = [row["sessions"] for row in rows if row["sustained"]]
    result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(args).items()},
              "cpu_cores": os.cpu_count(), "rows": rows, "max_sustained_sessions": max(sustained, default=0),
              "live_versus_offline": check}
    (args.out / "benchmark_server.json").write_text(json.dumps(result, indent=2))
    plot(rows, args, args.out / "latency.png")
    print("\n| sessions | fps (min) | p50 ms | p99 ms | mean batch | server CPU (cores) | CPU per session | CPU ms/frame "
          "(main + workers) | up B | down B | sustained |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        print(f"| {row['sessions']} | {row['fps_min']:.1f} | {row['latency_p50_ms']:.1f} | {row['latency_p99_ms']:.1f} | "
              f"{row['batch_mean']} | {row['server_cpu_cores']:.2f} | {row['cpu_per_session_cores']:.3f} | "
              f"{row['main_process_ms_per_frame']} + {row['workers_ms_per_frame']} | "
              f"{row['uplink_bytes_mean']:.0f} | {row['downlink_bytes_mean']:.0f} | {'yes' if row['sustained'] else 'no'} |")
    print(f"\nsessions sustained at {args.fps:g} fps with p99 <= {args.p99_target_ms:g} ms: "
          f"{result['max_sustained_sessions']}")
    if check:
        print(f"live vs offline PSNR over {check['frames']} frames: {check['live_psnr_mean']} vs "
              f"{check['offline_psnr_mean']} dB, largest per-frame difference {check['max_abs_difference_db']:.4f} dB")
    print(f"wrote {args.out / 'benchmark_server.json'} and {args.out / 'latency.png'}")
    return result


if __name__ == "__main__":
    run_script(main, Args, __doc__)
