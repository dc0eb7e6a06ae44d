"""What travels through a mailbox: the :class:`Envelope` of a signal, and the
:class:`Reply` slot of an ask. Internal."""

from __future__ import annotations

import asyncio
from typing import Any

from actors._spec import HandlerSpec
from actors.errors import SystemClosed
from persistence.store import SignalRecord


class Reply(asyncio.Future[Any]):
    """A one-shot slot for the answer to an ask.

    An asyncio future itself: the runtime runs on asyncio only (aiosqlite needs it),
    and one object made in C per ask costs less than a wrapper around one (or an
    ``anyio.Event``) on this per-message path. Made inside the running event loop.
    """

    __slots__ = ()

    def set(self, value: object) -> None:
        """Answer with a value."""
        if not self.done():
            self.set_result(value)

    def fail(self, error: BaseException) -> None:
        """Answer with an error."""
        if not self.done():
            self.set_exception(error)
            self.exception()  # retrieved: no "never retrieved" log if the caller left

    @property
    def future(self) -> asyncio.Future[Any]:
        """The answer as a future (await it directly to save a coroutine): itself."""
        return self

    async def wait(self) -> Any:
        """The answer: the value, or the error raised."""
        return await self


class Envelope:
    """A signal on its way through the mailbox."""

    __slots__ = ("from_inbox", "handler", "keyed", "recovered", "reply", "signal", "values")

    def __init__(
        self,
        handler: HandlerSpec,
        signal: SignalRecord,
        values: dict[str, object] | None,
        keyed: bool,
        reply: Reply | None,
        from_inbox: bool,
        recovered: bool = False,
    ) -> None:
        self.recovered = recovered
        """Read back from the inbox (recovery, a requeued dead letter): it may have run
        before, so its journal is read before its handler runs again."""
        self.from_inbox = from_inbox
        """The signal is in the inbox (a tell, a timer, a recovered or journaled ask)."""
        self.handler = handler
        self.signal = signal
        self.values = values
        self.keyed = keyed
        self.reply = reply


def closed_error(env: Envelope) -> SystemClosed:
    """What a caller of ``env`` is told when the system closes under it."""
    if env.from_inbox:
        return SystemClosed(
            "the actor system closed while this call ran: it is durably accepted and runs to its "
            "end after the next start (send it again only with the same key)",
            accepted=True,
        )
    return SystemClosed("the actor system closed before this call was done: nothing of it was kept")
