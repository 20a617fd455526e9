"""Session hosts in this process or in worker processes, behind one asynchronous interface.

``--processes 0`` keeps one :class:`~sgaps_server.host.SessionHost` in the server's process
(:class:`LocalWorker`); ``--processes N`` starts N processes, each with its own host
(:class:`ProcessWorker`), and gives each new session to the worker with the fewest. Calls to one worker
run one at a time, in the order they were made (one thread per worker sends them), so a session's
``open``, frames and ``close`` keep their order. A worker process that dies takes only its own sessions
with it: their calls fail with :class:`WorkerDied`, the others go on.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sgaps_server.config import ServerConfig
from sgaps_server.host import SessionHost


class WorkerDied(RuntimeError):
    """The worker process of a session is gone."""


class LocalWorker:
    """A host in the server's own process, run on one thread (off the event loop)."""

    def __init__(self, config: ServerConfig, index: int = 0):
        self.index = index
        self.host = SessionHost(config)
        self.sessions = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"sgaps-host-{index}")

    async def call(self, method: str, *args, **kwargs) -> Any:
        result = await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: getattr(self.host, method)(*args, **kwargs))
        if method == "run_batch":  # off the reply's path, before the next call (one thread runs them in order)
            self._executor.submit(self.host.expand_pending)
        return result

    def stop(self, reason: str = "server stopped") -> None:
        self._executor.submit(self.host.close_all, reason).result()
        self._executor.shutdown(wait=True)


def _serve(connection, config: ServerConfig) -> None:
    """A worker process: a host answering ``(method, args, kwargs)`` with ``(ok, value)`` until ``stop``."""
    import torch

    torch.set_num_threads(1)  # one core per worker process
    try:
        host = SessionHost(config)
    except Exception as error:  # noqa: BLE001 - reported to the parent
        connection.send((False, RuntimeError(f"the worker could not load its models: {error}")))
        return
    connection.send((True, "ready"))
    while True:
        try:
            method, args, kwargs = connection.recv()
        except EOFError:  # the server is gone
            host.close_all("server gone")
            return
        if method == "stop":
            host.close_all(*args)
            connection.send((True, None))
            return
        try:
            reply = (True, getattr(host, method)(*args, **kwargs))
        except Exception as error:  # noqa: BLE001 - the caller raises it
            reply = (False, error)
        try:
            connection.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError):
            connection.send((False, RuntimeError(f"{method} failed: {''.join(traceback.format_exception(reply[1]))}"
                                                 if not reply[0] else f"{method} returned an unpicklable value")))
        if method == "run_batch":
            host.expand_pending()  # off the reply's path


class ProcessWorker:
    """A host in its own process (``multiprocessing`` spawn), called over a pipe from one thread."""

    def __init__(self, config: ServerConfig, index: int):
        self.index = index
        self.sessions = 0
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or locks
        self._pipe, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, config), daemon=True,
                                       name=f"sgaps-worker-{index}")
        self.process.start()
        child.close()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"sgaps-worker-{index}")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        if not self._pipe.poll(timeout_s):
            raise RuntimeError(f"worker process {self.index} did not start within {timeout_s:g} s")
        ok, value = self._pipe.recv()
        if not ok:
            raise value

    def _call(self, method: str, args: tuple, kwargs: dict) -> Any:
        try:
            self._pipe.send((method, args, kwargs))
            ok, value = self._pipe.recv()
        except (EOFError, OSError, BrokenPipeError) as error:
            raise WorkerDied(f"worker process {self.index} is gone (exit code {self.process.exitcode}): "
                             f"{type(error).__name__}") from None
        if not ok:
            raise value
        return value

    async def call(self, method: str, *args, **kwargs) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, method, args, kwargs)

    def stop(self, reason: str = "server stopped") -> None:
        try:
            self._executor.submit(self._call, "stop", (reason,), {}).result(timeout=60)
        except Exception:  # noqa: BLE001 - already gone: its journals are recovered at the next start
            pass
        self._executor.shutdown(wait=True)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def start_workers(config: ServerConfig) -> list[LocalWorker | ProcessWorker]:
    """The server's workers: one local host, or ``config.processes`` worker processes (started in parallel)."""
    if config.processes == 0:
        return [LocalWorker(config)]
    workers = [ProcessWorker(config, index) for index in range(config.processes)]
    try:
        for worker in workers:
            worker.wait_ready()
    except BaseException:
        for worker in workers:
            worker.process.kill()
        raise
    return workers
