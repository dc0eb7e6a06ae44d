"""Sagas (compensation) and fan-out/fan-in for handlers.

``async with self.saga() as saga:`` then ``saga.compensate(fn, *args)`` before each
step registers its undo. If an exception leaves the block, the compensations run
in reverse order and the exception propagates; but not for a failure of the store
or the system (``StoreError``, ``SystemClosed``): the invocation then runs again from
its journal, and its finished steps stand. Each compensation is a journaled
step: an activity function (retried with backoff, so it must be idempotent), or a
ref's ``ask`` bound method (a journaled ask, asked again while it fails). Retries are
bounded by the saga's ``retry`` policy (default: 20 attempts, about an hour): a
compensation still failing then raises ``CompensationFailed``, and the invocation is
dead-lettered for a person to look at instead of wedging its entity forever. A crash, even kill -9, in the
middle of compensating resumes after recovery: the re-run replays the recorded
steps and goes on with the rest.

``await self.gather(*steps, limit=n)`` runs journaled steps (``self.run(...)``,
``self.ref(...).ask(...)``) concurrently, at most ``limit`` at a time, and returns
their results in argument order. Every branch runs to its end; then the first
failure in argument order is raised (or, with ``return_exceptions=True``, failures
are returned in place). A re-run replays finished branches from the journal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Protocol, TypeVar

import anyio

from actors._activities import StepHost, run_activity
from actors._ids import safe_repr
from actors._policies import RetryPolicy
from actors._ref import EntityRef
from actors.errors import (
    ActivityFailed,
    CompensationFailed,
    HandlerFailed,
    InvalidArguments,
    Rejected,
    StoreError,
    SystemClosed,
)


class SagaHost(StepHost, Protocol):
    """What a saga needs of its invocation (implemented by ``Invocation``)."""

    @property
    def actor(self) -> object:
        """The actor running the invocation (for log lines)."""
        ...


T = TypeVar("T")

COMPENSATION_RETRY = RetryPolicy(
    initial_interval=dt.timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=dt.timedelta(minutes=5),
    maximum_attempts=20,
)
"""How compensations are retried by default: 20 attempts, 1 s doubling up to 5 minutes."""


class Saga:
    """Registered compensations of one block; run in reverse if the block fails."""

    def __init__(self, inv: SagaHost, retry: RetryPolicy | None = None) -> None:
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArguments(f"retry must be a RetryPolicy, got {retry!r:.80}")
        self._inv = inv
        self._retry = retry or COMPENSATION_RETRY
        self._undo: list[tuple[Callable[..., Any], tuple[object, ...]]] = []

    def compensate(self, fn: Callable[..., Any], /, *args: object) -> None:
        """Register the undo of the next step: an activity function or a ref's ``ask``."""
        if not callable(fn):
            raise InvalidArguments(f"compensate() takes a function, got {fn!r:.80}")
        self._undo.append((fn, args))

    async def __aenter__(self) -> Saga:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or not isinstance(exc, Exception):
            return  # success, or cancellation: nothing to undo now
        if isinstance(exc, (StoreError, SystemClosed)):
            # the store or the system failed, not the step: the invocation runs again from
            # its journal (here or on the member that took its shard over) and the steps
            # that did happen are replayed, so undoing them now would undo what stands
            return
        inv = self._inv
        log = inv.kernel.log
        log.info("%r: saga failed (%r); running %d compensations", inv.actor, exc, len(self._undo))
        for fn, args in reversed(self._undo):
            try:
                if _is_ref_call(fn):
                    await _compensate_by_ask(inv, fn, args, self._retry)
                else:
                    await run_activity(inv, fn, args, retry=self._retry, timeout=None, heartbeat_timeout=None)
            except (ActivityFailed, HandlerFailed, StoreError) as e:
                raise CompensationFailed(
                    f"compensation {_name(fn)} failed for good ({safe_repr(e, 300)}) while undoing "
                    f"{safe_repr(exc, 300)}",
                    compensation=_name(fn),
                ) from e


async def _compensate_by_ask(
    inv: SagaHost, fn: Callable[..., Any], args: tuple[object, ...], policy: RetryPolicy
) -> None:
    """Ask until the callee accepts, at most ``policy.maximum_attempts`` times. Each try is
    a new journaled step with its own id: a call that crashed until dead-lettered left no
    trace, so asking again is safe."""
    kernel = inv.kernel
    attempt = 0
    while True:
        attempt += 1
        try:
            await fn(*args)
            return
        except Rejected as r:
            kernel.log.error("%r: compensation %s was refused: %s", inv.actor, _name(fn), r)
            return
        except (HandlerFailed, StoreError) as e:
            if policy.exhausted(attempt):
                raise
            delay = policy.delay(attempt)
            kernel.log.warning(
                "%r: compensation %s failed (%s); retry %d in %s", inv.actor, _name(fn), e, attempt, delay
            )
            async with inv.parked():
                await kernel.clock.sleep_until(kernel.clock.now() + delay)


def _is_ref_call(fn: Callable[..., Any]) -> bool:
    return isinstance(getattr(fn, "__self__", None), EntityRef)


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", repr(fn))


async def gather(
    inv: object,
    steps: tuple[Awaitable[Any], ...],
    *,
    limit: int | None,
    return_exceptions: bool,
) -> list[Any]:
    """Run ``steps`` concurrently (see the module docstring)."""
    bad = None
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        bad = InvalidArguments(f"limit must be an int >= 1 or None, got {limit!r}")
    for st in steps:
        if bad is None and not isinstance(st, Coroutine):
            bad = InvalidArguments(
                f"gather() takes un-awaited steps such as self.run(...) or ref.ask(...), got {st!r:.80}"
            )
    if bad is not None:
        for st in steps:  # they will never run: close them (no "never awaited" warnings)
            if isinstance(st, Coroutine):
                st.close()
        raise bad
    results: list[Any] = [None] * len(steps)
    errors: list[BaseException | None] = [None] * len(steps)
    limiter = anyio.CapacityLimiter(limit or max(len(steps), 1))

    async def branch(i: int, step: Awaitable[Any]) -> None:
        async with limiter:
            try:
                results[i] = await step
            except Exception as e:
                errors[i] = e

    async with anyio.create_task_group() as tg:
        for i, st in enumerate(steps):
            tg.start_soon(branch, i, st)
    if return_exceptions:
        return [e if e is not None else r for r, e in zip(results, errors, strict=True)]
    for e in errors:
        if e is not None:
            raise e
    return results
