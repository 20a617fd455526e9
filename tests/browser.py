"""Headless Chromium for tests: render a page, let its JavaScript run, read back the DOM or a screenshot.

The live server's page (``sgaps_server/page.html``) is built by JavaScript that polls the JSON API, so
reading the served HTML proves nothing; these helpers run a real browser as a subprocess instead, with
no driver library (nothing to install beyond Debian's ``chromium``, which ``scripts/bootstrap.sh``
installs when it can).

How the page gets time to run its JavaScript: ``--virtual-time-budget=<wait_ms>``. Chromium then runs
the page on a virtual clock and captures (``--dump-dom`` or ``--screenshot``) once ``wait_ms`` of
virtual time has passed. Virtual time advances instantly while nothing is pending and *pauses while a
network request is in flight*, so ``fetch()`` against a real local server does complete, timers
(``setTimeout``/``setInterval`` polling) fire, and images load before the capture: checked with
Chromium 150 on Debian 12, where a 500 ms poll loop against a ``ThreadingHTTPServer`` ran 7 times in a
3000 ms budget, and the whole run took about 0.6 s of wall time. Neither
``--run-all-compositor-stages-before-draw`` nor a real wait (``--timeout``) is needed. The flip side:
a request that never finishes (a stream, a long poll, a hung server) freezes virtual time, so the
capture never happens; every run therefore has a hard wall-clock timeout, after which the whole
Chromium process group is killed and :class:`ChromiumError` reports Chromium's stderr tail.

The flags are the ones a root-run container without a display, GPU, D-Bus or internet needs:
``--no-sandbox`` (root), ``--disable-gpu``, no background networking, component updates, sync or QUIC,
and a fresh ``--user-data-dir`` per run so runs never share (or lock) a profile.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

#: Where Debian's package puts it first; then whatever a PATH provides.
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

INSTALL_HINT = ("install it with `bash scripts/bootstrap.sh` as root, or "
                "`DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium`")

BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
)

#: Wall-clock seconds allowed on top of the virtual wait: Chromium's start-up and the real time requests take.
STARTUP_ALLOWANCE_S = 30.0

#: stderr lines that every run prints in a container without D-Bus; dropped from error reports as noise.
_NOISE_MARKERS = ("dbus/", "Failed to connect to the bus", "unexpected operator")


class ChromiumError(RuntimeError):
    """Chromium is missing, failed, timed out, or produced no output."""


def chromium_path() -> str | None:
    """The Chromium executable to run, or ``None`` when none is installed."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _stderr_tail(stderr: str, lines: int = 15) -> str:
    useful = [line for line in stderr.splitlines() if line.strip() and not any(m in line for m in _NOISE_MARKERS)]
    return "\n".join(useful[-lines:]) or "(nothing but D-Bus noise)"


def _run_chromium(url: str, action_flags: list[str], wait_ms: int,
                 timeout_s: float | None) -> subprocess.CompletedProcess:
    """Run headless Chromium once on ``url`` with a fresh profile and a hard timeout; raise on failure."""
    executable = chromium_path()
    if executable is None:
        raise ChromiumError(f"Chromium not found (looked for {', '.join(CHROMIUM_CANDIDATES)}); {INSTALL_HINT}")
    timeout_s = wait_ms / 1000 + STARTUP_ALLOWANCE_S if timeout_s is None else timeout_s
    with tempfile.TemporaryDirectory(prefix="sgaps-chromium-", ignore_cleanup_errors=True) as profile:
        command = [executable, *BASE_FLAGS, f"--user-data-dir={profile}",
                   f"--virtual-time-budget={int(wait_ms)}", *action_flags, url]
        # Its own session so a timeout can kill the renderer and GPU helpers too, not only the parent.
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise ChromiumError(
                f"Chromium did not finish {url} within {timeout_s:.0f} s (a request that never completes "
                f"freezes its virtual time). Command: {' '.join(command)}\nstderr tail:\n{_stderr_tail(stderr)}"
            ) from None
    if process.returncode != 0:
        raise ChromiumError(f"Chromium exited with code {process.returncode} on {url}. "
                            f"Command: {' '.join(command)}\nstderr tail:\n{_stderr_tail(stderr)}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def dump_dom(url: str, wait_ms: int = 3000, timeout_s: float | None = None) -> str:
    """The page's DOM as HTML after ``wait_ms`` of virtual time: what its JavaScript has built by then."""
    result = _run_chromium(url, ["--dump-dom"], wait_ms, timeout_s)
    if not result.stdout.strip():
        raise ChromiumError(f"Chromium printed no DOM for {url}.\nstderr tail:\n{_stderr_tail(result.stderr)}")
    return result.stdout


def screenshot(url: str, out_png: str | os.PathLike, width: int = 1280, height: int = 900, wait_ms: int = 3000,
               timeout_s: float | None = None) -> Path:
    """Save a ``width`` x ``height`` PNG of the page after ``wait_ms`` of virtual time; return its path."""
    out_png = Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    out_png.unlink(missing_ok=True)  # so a stale file from an earlier run cannot pass for this one
    result = _run_chromium(url, [f"--screenshot={out_png}", f"--window-size={width},{height}"], wait_ms, timeout_s)
    if not out_png.is_file() or out_png.stat().st_size == 0:
        raise ChromiumError(f"Chromium wrote no screenshot to {out_png} for {url}.\n"
                            f"stderr tail:\n{_stderr_tail(result.stderr)}")
    return out_png
