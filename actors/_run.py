"""An invocation of an async handler in a task of its own (a :class:`Run`): the
actor's record of it while it runs, parks and resumes. Internal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio

from actors._activities import CancelFlag
from actors._envelope import Envelope
from actors._invocation import Invocation


class Run:
    """An invocation of an async handler in a task of its own: it may park (wait,
    sleep, a child's result) while its actor goes on with other messages."""

    __slots__ = (
        "cancel_pending",
        "env",
        "error",
        "flag",
        "go",
        "holding",
        "inv",
        "parked",
        "predicate",
        "scope",
        "segment",
        "task",
        "timer",
        "unwatch",
        "value",
        "woken",
    )

    def __init__(self, env: Envelope) -> None:
        self.env = env
        self.inv: Invocation | None = None
        self.scope: anyio.CancelScope | None = None
        self.cancel_pending = False
        self.segment: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done when the running segment ends (parked or finished): the drain waits on it."""
        self.holding = True
        """Whether it runs as the entity's writer now (the drain waits for it)."""
        self.parked = False
        self.woken = False
        self.value: object = None
        self.error: BaseException | None = None
        self.go: asyncio.Future[None] | None = None
        self.predicate: Callable[[], object] | None = None
        self.timer: asyncio.Task[Any] | None = None
        self.task: asyncio.Task[None] | None = None
        """The task running it (a handoff waits for it to end)."""
        self.unwatch: Callable[[], None] | None = None
        self.flag = CancelFlag()

    def unpark(self) -> None:
        """Forget the wait (its deadline task, its watch)."""
        self.parked = False
        self.holding = True
        self.go = None
        self.predicate = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.unwatch is not None:
            self.unwatch()
            self.unwatch = None

    def end(self) -> None:
        """The invocation ended (or was paused)."""
        self.unpark()
