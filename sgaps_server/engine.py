"""Dynamic batching: the frames of concurrent sessions reconstructed together, on their hosts.

Each session has at most one frame in flight (its client waits for the next coordinates before it
sends the next frame), so a batch holds at most one frame per session and a session's frames stay in
order. Each worker (:mod:`sgaps_server.workers`) has its own queue and collector: the collector takes
the first waiting frame and lets others join it until every session of that worker has one in the
batch, ``max_batch`` is reached, or ``batch_deadline_ms`` has passed (so a lone session never waits),
then hands the batch to the worker's host (:meth:`sgaps_server.host.SessionHost.run_batch`: one SPT
forward pass per batch). With N worker processes, N batches run at once on N cores.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

from sgaps_env.wire import FrameData, FrameTruth

from sgaps_server.host import FrameResult
from sgaps_server.session import StreamSession


@dataclass
class _Job:
    session: StreamSession
    frame: FrameData
    truth: FrameTruth | None
    future: asyncio.Future


class BatchEngine:
    """Collects each worker's frames into batches (see the module docstring)."""

    def __init__(self, workers: list, max_batch: int, deadline_ms: float,
                 on_batch: Callable[[int, float], None] | None = None):
        self.workers, self.max_batch, self.deadline_s = workers, max_batch, deadline_ms / 1000.0
        self.on_batch = on_batch
        self._queues: dict[int, asyncio.Queue[_Job]] = {}
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self._queues = {worker.index: asyncio.Queue() for worker in self.workers}
        self._tasks = [asyncio.create_task(self._collect(worker), name=f"sgaps-collector-{worker.index}")
                       for worker in self.workers]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def submit(self, session: StreamSession, frame: FrameData, truth: FrameTruth | None) -> FrameResult:
        """``frame`` of ``session`` through the next batch of its worker; raises what its host raised."""
        future = asyncio.get_running_loop().create_future()
        self._queues[session.worker.index].put_nowait(_Job(session, frame, truth, future))
        return await future

    async def _collect(self, worker) -> None:
        queue = self._queues[worker.index]
        while True:
            batch = [await queue.get()]
            deadline = time.perf_counter() + self.deadline_s
            while len(batch) < min(self.max_batch, max(1, worker.sessions)):
                try:
                    batch.append(queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            started = time.perf_counter()
            try:
                outcomes = await worker.call("run_batch", [(job.session.session_id, job.frame, job.truth)
                                                           for job in batch])
            except asyncio.CancelledError:
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(RuntimeError("the server is shutting down"))
                raise
            except Exception as error:  # noqa: BLE001 - the worker is gone: each of its frames fails with it
                outcomes = [error] * len(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - started)
            for job, outcome in zip(batch, outcomes):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)
