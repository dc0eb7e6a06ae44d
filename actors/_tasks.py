"""The system's lifecycle state and the tasks it owns. Internal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal

State = Literal["new", "starting", "running", "closing", "closed"]


class Tasks:
    """The system's state and its tasks: every task started here is cancelled and
    awaited on close. Plain asyncio tasks, not a task group entered at start, so
    ``aclose()`` works from any cancel scope of its caller."""

    __slots__ = (
        "_drain_ended",
        "_log",
        "_state",
        "closing",
        "drains",
        "live",
        "loop",
        "pumping",
        "running",
        "tasks",
    )

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self.running = False
        """Whether the system takes calls (state "running")."""
        self.closing = False
        """Whether the system is closing or closed (handlers are being paused)."""
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set at start
        """The event loop the system runs on, taken when it starts. The per-message path
        makes its futures on it: ``asyncio.get_running_loop()`` (also inside a future made
        without a loop) asks the kernel for the process id on every call, to notice a
        fork: a system call per future, saved."""
        self.live = False
        """Starting or running: new tasks may start."""
        self.state = "new"
        self.tasks: set[asyncio.Task[Any]] = set()
        """The system's own tasks (committer, timers, sweeper, retries)."""
        self.drains: set[asyncio.Task[None]] = set()
        """The actors' drain tasks."""
        self._drain_ended = self.drains.discard  # one bound method, not one per drain
        self.pumping = 0
        """Actors whose mailbox is handled without a task of their own (``actors._pump``)."""

    @property
    def state(self) -> State:
        """The system's lifecycle state."""
        return self._state

    @state.setter
    def state(self, state: State) -> None:
        # the flags the per-message path reads are plain attributes, set here
        self._state = state
        if self.loop is None and state in ("starting", "running"):
            self.loop = asyncio.get_running_loop()
        self.running = state == "running"
        self.closing = state in ("closing", "closed")
        self.live = state in ("starting", "running")

    def spawn_drain(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Start an actor's drain loop.

        Drains are the one per-message-burst task, so they are created on the loop
        directly (an anyio task-group spawn costs several times more); the system
        still owns them: it keeps them in a set and cancels and awaits them on close.
        """
        if not self.live:
            coro.close()
            return None
        task = self.loop.create_task(coro)
        self.drains.add(task)
        task.add_done_callback(self._drain_ended)
        return task

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Start a task owned by the system, unless it is closing."""
        if self.live:
            task = self.loop.create_task(fn())
            self.tasks.add(task)
            task.add_done_callback(self._task_done)

    def spawn_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Start a task owned by the system and return it (None, and ``coro`` closed, if
        the system is closing)."""
        if not self.live:
            coro.close()
            return None
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def start(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Start one of the system's loops (committer, timers, heartbeats, ...): a task
        that runs until the system closes. One that ends before is logged as critical,
        however it ended (a loop cancelled by a stray cancellation ends silently
        otherwise, and what it did stops for good)."""
        task = self.loop.create_task(fn())
        self.tasks.add(task)
        task.add_done_callback(self._loop_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.critical("a task of the actor system died", exc_info=task.exception())

    def _loop_done(self, task: asyncio.Task[Any]) -> None:
        self._task_done(task)
        if self.state == "running" and (task.cancelled() or task.exception() is None):
            how = "was cancelled" if task.cancelled() else "returned"
            self._log.critical("a loop of the actor system %s while the system runs: %r", how, task)

    @staticmethod
    async def stop(tasks: list[asyncio.Task[Any]]) -> None:
        """Cancel ``tasks`` and wait for them to end."""
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
