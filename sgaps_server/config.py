"""The live server's options: one typed dataclass, read from a TOML file and overridden by flags.

    python -m sgaps_server --port 8765                           # defaults
    python -m sgaps_server --config server.toml --token secret   # a file, then flags on top

A config file holds any of the fields below as top-level TOML keys (``policy = "learned"``,
``max_sessions = 32``, paths as strings); an unknown key or a value of the wrong type is refused with
the key's name, before the server starts.
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agents.policies import DEFAULT_SAMPLER
from models.spt import DEFAULT_CHECKPOINT
from models.tile_reconstructor import DEFAULT_ATLAS, DEFAULT_CODEBOOK
from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH

#: The policies a live server can run: every policy that needs neither the true frame nor another model's
#: analysis per frame (the oracle needs the future; the importance policy runs the SPT per frame).
SERVER_POLICIES = ("uncertainty", "learned", "random", "stratified", "uniform_grid", "checkerboard", "ram")
RECONSTRUCTORS = ("tiles", "tiles+atlas", "spt")


@dataclass
class ServerConfig:
    """Options of the SGAPS live server (``python -m sgaps_server --help``)."""

    config: Path | None = None
    """TOML file of these options (top-level keys); flags given on the command line override it"""
    host: str = "127.0.0.1"
    """address to listen on (0.0.0.0: every interface; put a TLS proxy in front when it faces a network)"""
    port: int = 8765
    """TCP port (0: any free port, printed at start)"""
    reconstructor: Literal[*RECONSTRUCTORS] = "tiles"
    """what rebuilds the frames: the level-agnostic tile reconstructor (with the atlas of worlds 1-4 on
    the levels it holds: tiles+atlas) or the SPT (batched on one network)"""
    policy: Literal[*SERVER_POLICIES] = "uncertainty"
    """where each session samples next (agents.policies); uncertainty and learned read the tile memory"""
    sample_count: int = 500
    """pixels each client samples per frame"""
    target_fps: float = 15.0
    """frames per second the server tells clients to send (the env's 60 / frame_skip 4)"""
    codebook: Path = DEFAULT_CODEBOOK
    """tile codebook of the tile reconstructor (the shipped one by default)"""
    atlas: Path = DEFAULT_ATLAS
    """level atlas, for --reconstructor tiles+atlas"""
    checkpoint: Path = DEFAULT_CHECKPOINT
    """SPT checkpoint, for --reconstructor spt"""
    learned_model: Path = DEFAULT_SAMPLER
    """sampler model of --policy learned"""
    record: Path | None = Path("runs/server/sessions.h5")
    """session file the sessions are recorded into (None: no recording); a crashed server's sessions are
    recovered from their journals when it starts again"""
    record_reconstruction_every: int = 30
    """record every n-th reconstruction (0: none); samples, state and coordinates are recorded every frame"""
    seed: int = 0
    """the policies' seeds: session k (0, 1, ... since the server started) draws from seed + k"""
    token: str | None = None
    """bearer token clients must send (``Authorization: Bearer <token>``); None: no authentication"""
    max_sessions: int = 16
    """sessions open at once; more are refused with an error (503) before any work"""
    max_message_bytes: int = 262_144
    """largest WebSocket message accepted, compressed (a frame's data is ~300 B; an evaluation truth frame
    ~10 KB); larger closes the connection (1009) before it is decompressed"""
    max_messages_per_second: float = 120.0
    """per session: messages beyond this rate (bursts of up to a second's worth) are dropped with an error 429;
    8x the target fps leaves room for truth frames and heartbeats"""
    max_session_frames: int = 27_000
    """frames one session may send (30 minutes at 15 fps): bounds its recording on disk, and the memory its
    journal takes when it becomes a shard at the end (about 8 KB a frame, 60 KB with truth frames)"""
    max_errors: int = 20
    """rejected messages in a row after which a session is closed (1008)"""
    heartbeat_timeout_s: float = 30.0
    """a session that sends nothing (no frame, no heartbeat) for this long is closed (4408)"""
    handshake_timeout_s: float = 10.0
    """time a new connection has to send its session_start"""
    send_queue_limit: int = 16
    """messages waiting to go to one client (bounds its memory on the server)"""
    send_timeout_s: float = 5.0
    """a client whose send queue stays full this long (it stopped reading) is closed (4429)"""
    max_pages: int = 32
    """level pages (256 px wide) of tile memory per session, least recently used dropped: caps a session's
    memory at about 1.3 MB per page"""
    batch_deadline_ms: float = 3.0
    """how long the first frame of a batch waits for frames of other sessions to join it"""
    max_batch: int = 32
    """frames of the SPT reconstructed in one forward pass (the tile reconstructor, which has no network, takes
    frames one at a time: a batch would only make them wait for each other)"""
    processes: int = 0
    """worker processes holding the sessions' models (each new session goes to the one with the fewest): a
    process uses one core, so N processes use N; 0 keeps the sessions in the server's own process"""
    allow_truth: bool = True
    """accept opt-in truth frames (evaluation clients): PSNR on the page and the true frames recorded"""

    def check(self) -> "ServerConfig":
        """Refuse options out of range, with the flag to fix; returns self."""
        problems = []
        for name in ("max_sessions", "max_message_bytes", "max_session_frames", "max_errors", "send_queue_limit",
                     "max_batch"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("target_fps", "max_messages_per_second", "heartbeat_timeout_s", "handshake_timeout_s",
                     "send_timeout_s"):
            if not getattr(self, name) > 0:
                problems.append(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 1 <= self.sample_count <= FRAME_HEIGHT * FRAME_WIDTH:
            problems.append(f"--sample-count must be in [1, {FRAME_HEIGHT * FRAME_WIDTH}], got {self.sample_count}")
        if not 0 <= self.port <= 65535:
            problems.append(f"--port must be in [0, 65535], got {self.port}")
        if not 0 <= self.processes <= 64:
            problems.append(f"--processes must be in [0, 64], got {self.processes}")
        if self.max_pages < 2:
            problems.append(f"--max-pages must be at least 2, got {self.max_pages}")
        if self.batch_deadline_ms < 0 or self.record_reconstruction_every < 0:
            problems.append("--batch-deadline-ms and --record-reconstruction-every must be 0 or more")
        if self.policy in ("uncertainty", "learned") and not self.reconstructor.startswith("tiles"):
            problems.append(f"--policy {self.policy} reads the tile reconstructor's memory: use --reconstructor tiles "
                            "or tiles+atlas, or another --policy")
        if self.token is not None and not self.token:
            problems.append("--token must not be empty (leave it out for no authentication)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _check_type(name: str, value: Any, annotation: Any) -> Any:
    """``value`` from TOML as the field's type (paths from strings), or ValueError naming the key."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if typing.get_origin(option) is Literal and value in typing.get_args(option):
            return value
        if option is Path and isinstance(value, str):
            return Path(value)
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option in (int, str, bool) and type(value) is option:
            return value
    raise ValueError(f"config key {name!r} has the value {value!r}, which is not a {annotation}")


def load_config_file(path: Path, defaults: ServerConfig | None = None) -> ServerConfig:
    """The options of a TOML file on top of ``defaults``."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config file {path} is not valid TOML: {error}") from None
    hints = typing.get_type_hints(ServerConfig)
    known = {item.name for item in dataclasses.fields(ServerConfig)} - {"config"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"config file {path}: unknown keys {unknown}; known: {sorted(known)}")
    values = {name: _check_type(name, value, hints[name]) for name, value in data.items()}
    return dataclasses.replace(defaults or ServerConfig(), config=Path(path), **values)


def parse_config(argv: list[str] | None = None) -> ServerConfig:
    """Flags over a config file over the defaults: ``--config`` is read first, the other flags then override it."""
    import tyro

    from sgaps_server import __doc__ as description

    first = tyro.cli(ServerConfig, args=argv, description=description)
    if first.config is None:
        return first.check()
    from_file = load_config_file(first.config)
    return tyro.cli(ServerConfig, args=argv, default=from_file, description=description).check()
