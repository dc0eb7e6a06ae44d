"""Other entities, as a handler reaches them (a ref made with ``self.ref``): a
``tell`` goes to the outbox (sent after, and only if, the invocation commits), an
``ask`` is journaled, a ``start`` makes a child invocation whose result is awaited
at a checkpoint. Internal."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, Protocol

import anyio

from actors import _checkpoints as checkpoints
from actors import _outcome as outcome
from actors._envelope import Envelope, Reply
from actors._ids import derived_id, digest, internal_key_id, parse_start_id, start_id
from actors._journal import request_cancel
from actors._ref import InvocationHandle
from actors._spec import EntitySpec, HandlerSpec
from actors.errors import DeadlineExceeded, InvalidArguments, Rejected, SystemClosed
from persistence.store import SignalRecord


class CallsHost(checkpoints.Waiter, Protocol):
    """What the calls to other entities need of their invocation (``Invocation``)."""

    @property
    def outbox(self) -> list[SignalRecord]:
        """Signals sent when the invocation commits."""
        ...

    def add_outbox(self, rec: SignalRecord) -> None:
        """A signal sent when the invocation commits."""
        ...

    @property
    def now(self) -> dt.datetime:
        """The invocation's time."""
        ...


class _Done:
    """An awaitable that is already done (the outbox ``tell`` of a bound ref)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # makes this a generator function: awaiting it returns None at once


_DONE = _Done()


class Outcalls:
    """The ``Caller`` of a ref made inside a handler, and the host of its handles.

    Made once per invocation, on its first ``self.ref`` (most runs make none)."""

    __slots__ = ("inv",)

    def __init__(self, inv: CallsHost) -> None:
        self.inv = inv

    def _key_id(self, key: str) -> str:
        s = self.inv.signal
        return internal_key_id(s.entity_type, s.entity_id, key)

    def tell(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None = None,
    ) -> Awaitable[None]:
        """Queue a signal in the outbox; sent after (and only if) this invocation commits."""
        inv = self.inv
        s = inv.signal
        if key is not None:
            sid = self._key_id(key)
        else:
            sid = derived_id("o", s.entity_type, s.entity_id, s.signal_id, len(inv.outbox))
        _h, _values, rec = spec.build_signal(
            inv.kernel.codec,
            entity_id,
            handler,
            args,
            kwargs,
            signal_id=sid,
            accepted_at=inv.now.timestamp(),
            keyed=True,
            trace=inv.kernel.observer.carry(),
        )
        inv.add_outbox(rec)
        return _DONE

    def query(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        timeout: float | None,
    ) -> Coroutine[Any, Any, Any]:
        """A query of another entity's committed state (not journaled)."""
        return self.inv.kernel.route.query(spec, entity_id, handler, args, kwargs, timeout)

    # ------------------------------------------------------------ children
    def start(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None = None,
    ) -> Coroutine[Any, Any, InvocationHandle[Any]]:
        """Start a child invocation (journaled; sent with the next commit); returns its handle."""
        self.inv.assert_async(f"self.ref(...).start({getattr(handler, '__name__', handler)!s:.60})")
        return self._start(spec, entity_id, handler, args, kwargs, key)

    async def _start(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
    ) -> InvocationHandle[Any]:
        inv = self.inv
        step = inv.reserve_step()
        s = inv.signal
        unique = digest(s.entity_type, s.entity_id, s.signal_id, step if key is None else f"k:{key}")
        sid = start_id(spec.name, entity_id, "c", unique)
        h, _values, rec = spec.build_signal(
            inv.kernel.codec,
            entity_id,
            handler,
            args,
            kwargs,
            signal_id=sid,
            accepted_at=inv.now.timestamp(),
            keyed=True,
            trace=inv.kernel.observer.carry(),
        )
        name = f"{spec.name}/{entity_id}.{h.name}"
        entry = await inv.recorded(step, "start", name)
        if entry is None:
            inv.add_outbox(rec)
            inv.journal_later(inv.entry(step, "start", name, json.dumps(sid)))
        return InvocationHandle(self, sid, h.returns)

    async def handle_result(self, handle_id: str, returns: object, timeout: float | None) -> Any:
        """A child's outcome: a checkpoint until it is committed (``timeout``: durable seconds)."""
        inv = self.inv
        inv.assert_async("handle.result()")
        after = None if timeout is None else dt.timedelta(seconds=timeout)
        text = await checkpoints.wait(inv, f"result {handle_id}", None, after, None, handle_id)
        if text is None:
            raise DeadlineExceeded(f"no outcome of {handle_id} within {timeout:g}s")
        return outcome.decode(inv.kernel.codec, str(text), returns, where=f"the outcome of {handle_id}")

    async def handle_cancel(self, handle_id: str, reason: str) -> None:
        """Request a child's cancellation (durably)."""
        etype, eid = parse_start_id(handle_id)
        await request_cancel(self.inv.kernel, handle_id, etype, eid, reason)

    async def _answer(
        self, spec: EntitySpec, entity_id: str, h: HandlerSpec, rec: SignalRecord, values: dict[str, object]
    ) -> Any:
        """Deliver a journaled ask and wait for its answer. If the target's shard moves
        to another member while the ask waits there (nothing of it was kept), it is
        sent on to the new owner: its key makes it run once wherever it runs."""
        kernel = self.inv.kernel
        while True:
            reply = Reply(loop=kernel.tasks.loop)
            kernel.route.deliver(
                spec, entity_id, Envelope(h, rec, values=values, keyed=True, reply=reply, from_inbox=False)
            )
            try:
                return await reply.wait()
            except SystemClosed as e:  # a system that is still starting sends it on too
                if e.accepted or not kernel.tasks.live or kernel.shards.owns(spec.name, entity_id):
                    raise

    # ------------------------------------------------------------ journaled asks
    def ask(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """A journaled ask to another entity (see ``EntityRef.ask``); must be awaited."""
        self.inv.assert_async(f"self.ref(...).ask({getattr(handler, '__name__', handler)!s:.60})")
        return self._ask(spec, entity_id, handler, args, kwargs, key, timeout)

    async def _ask(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None = None,
    ) -> Any:
        """A journaled ask to another entity (see ``EntityRef.ask``).

        ``timeout`` (wall seconds) bounds the wait; past it ``DeadlineExceeded`` is
        raised, and journaled, so a re-run takes the same branch.
        """
        inv = self.inv
        step = inv.reserve_step()
        kernel = inv.kernel
        s = inv.signal
        if key is not None:
            sid = self._key_id(key)
        else:
            sid = derived_id("a", s.entity_type, s.entity_id, s.signal_id, step)
        h, values, rec = spec.build_signal(
            kernel.codec,
            entity_id,
            handler,
            args,
            kwargs,
            signal_id=sid,
            accepted_at=kernel.clock.now().timestamp(),
            keyed=True,
            trace=kernel.observer.carry(),
        )
        name = f"{spec.name}/{entity_id}.{h.name}"
        entry = await inv.recorded(step, "ask", name)
        if entry is not None:
            return outcome.decode(kernel.codec, entry.result, h.returns)
        me = (inv.actor.spec.name, inv.actor.id)
        target = (spec.name, entity_id)
        if target == me:
            raise InvalidArguments(
                f"{me[0]}/{me[1]} asks itself ({h.name}): it would wait for its own mailbox; "
                "use self.ref(...).tell or call the logic directly"
            )
        kernel.waits.check_cycle(me, target)
        token = inv.step_started("ask", name, 1)
        try:
            with kernel.waits.waiting(me, target):
                async with inv.parked():
                    if timeout is None:
                        value = await self._answer(spec, entity_id, h, rec, values)
                    else:
                        with anyio.move_on_after(timeout) as waited:
                            value = await self._answer(spec, entity_id, h, rec, values)
                        if waited.cancelled_caught:
                            raise DeadlineExceeded(f"{name}: no answer within {timeout:g}s")
        except DeadlineExceeded as d:
            inv.step_ended(token, "failed", d)
            await inv.journal_write(step, "ask", name, outcome.encode_error("deadline", d))
            raise
        except Rejected as r:
            inv.step_ended(token, "rejected", r)
            await inv.journal_write(step, "ask", name, outcome.encode_error("rejected", r))
            raise
        except BaseException as e:
            inv.step_ended(token, "failed", e)
            raise
        inv.step_ended(token, "ok", None)
        stored = outcome.encode_ok(kernel.codec, value, h.returns, f"result of answer of {name}")
        await inv.journal_write(step, "ask", name, stored)
        return outcome.decode(kernel.codec, stored, h.returns)
