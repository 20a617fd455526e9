"""The server's options: a TOML file under flags, range checks, and ``python -m sgaps_server`` refusing bad input."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sgaps_server.config import ServerConfig, load_config_file, parse_config

ROOT = Path(__file__).resolve().parents[1]


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text('port = 9000\npolicy = "random"\nmax_sessions = 3\nrecord = "out/s.h5"\ntarget_fps = 30\n')
    config = parse_config(["--config", str(path), "--max-sessions", "5"])
    assert (config.port, config.policy, config.max_sessions, config.record, config.target_fps) == (
        9000, "random", 5, Path("out/s.h5"), 30.0)
    assert parse_config([]).port == ServerConfig().port  # no file: the defaults


@pytest.mark.parametrize("text, named", [
    ("nonsense = 1\n", "nonsense"),
    ('port = "eighty"\n', "port"),
    ('policy = "oracle"\n', "policy"),  # needs the true next frame: not servable
    ("max_sessions = true\n", "max_sessions"),
    ("port = [1, 2\n", "not valid TOML"),
])
def test_a_bad_config_file_is_refused_naming_the_key(tmp_path, text, named):
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=named):
        load_config_file(path)


@pytest.mark.parametrize("changes, named", [
    ({"max_sessions": 0}, "--max-sessions"), ({"sample_count": 0}, "--sample-count"),
    ({"heartbeat_timeout_s": 0.0}, "--heartbeat-timeout-s"), ({"processes": -1}, "--processes"),
    ({"reconstructor": "spt", "policy": "uncertainty"}, "--policy uncertainty"), ({"token": ""}, "--token"),
])
def test_options_out_of_range_are_refused(changes, named):
    with pytest.raises(ValueError, match=named):
        ServerConfig(**changes).check()


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sgaps_server", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "240"})


def test_module_help_and_bad_flags():
    help_text = _run("--help")
    assert help_text.returncode == 0
    for flag in ("--port", "--config", "--token", "--max-sessions", "--processes", "--policy", "--record"):
        assert flag in help_text.stdout
    refused = _run("--max-sessions", "0")
    assert refused.returncode == 2 and "--max-sessions" in refused.stderr and "Traceback" not in refused.stderr
    missing = _run("--config", "/nonexistent/server.toml")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
