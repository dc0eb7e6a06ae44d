"""Activities: external side effects with retries, timeouts, heartbeats and a journal.

``await self.run(fn, *args, retry=RetryPolicy(...), timeout=..., heartbeat_timeout=...)``
inside a signal handler calls ``fn`` (sync ones in a worker thread) and journals
its result at once, before the handler goes on. A handler re-run after a crash
gets the recorded result instead of calling ``fn`` again; a retry's wait is
journaled too, so a 10-minute backoff survives a restart. ``fn`` receives an
:class:`ActivityContext` when its first parameter is annotated with that type.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import inspect
import json
import typing
from collections.abc import Callable
from typing import Any, Protocol

import anyio

from actors._clock import Clock, SystemClock
from actors._ids import digest, safe_text
from actors._kernel import Kernel
from actors._policies import RetryPolicy
from actors._work import Work
from actors.errors import (
    ActivityFailed,
    Cancelled,
    InvalidArguments,
    PayloadTooLarge,
    SerializationError,
)
from actors.observe import Outcome
from persistence.store import JournalEntry


class StepHost(Protocol):
    """What an activity needs of its invocation (implemented by ``Invocation``)."""

    kernel: Kernel
    signal: Any

    def reserve_step(self) -> int:
        """Number the next journaled step."""
        ...

    async def recorded(self, step: int, kind: str, name: str) -> JournalEntry | None:
        """What the journal holds for ``step``."""
        ...

    async def journal_write(self, step: int, kind: str, name: str, result: str) -> None:
        """Record a step durably."""
        ...

    def parked(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Count the invocation as waiting inside the block."""
        ...

    def step_started(self, kind: str, name: str, attempt: int) -> object:
        """Tell the observer a step starts."""
        ...

    def step_ended(self, step: object, outcome: Outcome, error: BaseException | None) -> None:
        """Tell the observer a step ended."""
        ...

    @property
    def cancel_flag(self) -> CancelFlag:
        """The invocation's cancellation request."""
        ...


class ActivityClock:
    """The system's clock as an activity sees it (virtual in tests)."""

    __slots__ = ("_clock", "_work")

    def __init__(self, clock: Clock, work: Work | None = None) -> None:
        self._clock = clock
        self._work = work

    def now(self) -> dt.datetime:
        """The system's current time (timezone-aware, UTC)."""
        return self._clock.now()

    async def sleep(self, seconds: float | dt.timedelta) -> None:
        """Wait ``seconds`` (or a timedelta) on the system's clock (async activities)."""
        secs = seconds.total_seconds() if isinstance(seconds, dt.timedelta) else float(seconds)
        when = self._clock.now() + dt.timedelta(seconds=max(secs, 0.0))
        work = self._work
        if work is None:
            await self._clock.sleep_until(when)
            return
        work.running_activities -= 1  # waits on the clock now, not on the outside world
        try:
            await self._clock.sleep_until(when)
        finally:
            work.running_activities += 1


class ActivityContext:
    """What an activity function may ask about its run; thread-safe for sync functions."""

    def __init__(
        self,
        attempt: int,
        idempotency_key: str,
        details: object,
        on_beat: Callable[[], None],
        clock: Clock | None = None,
        cancel: CancelFlag | None = None,
        work: Work | None = None,
    ) -> None:
        self.clock: ActivityClock = ActivityClock(clock if clock is not None else SystemClock(), work)
        """The system's clock: ``now()`` and ``await sleep(seconds)``."""
        self._cancel = cancel
        self.attempt = attempt
        """This attempt's number, 1 for the first."""
        self.idempotency_key = idempotency_key
        """The same on every attempt and re-run of this step: hand it to the outside world."""
        self.heartbeat_details = details
        """The details of the last heartbeat of an earlier attempt (None if none)."""
        self._on_beat = on_beat
        self._pending: object = details

    @property
    def cancelled(self) -> bool:
        """Whether the invocation was cancelled through its handle (stop soon, then
        return or raise; the next ``heartbeat()`` raises ``Cancelled``)."""
        return self._cancel is not None and self._cancel.active

    def heartbeat(self, details: object = None) -> None:
        """Report progress; ``details`` reach the next attempt if this one fails.

        Raises ``Cancelled`` once the invocation is cancelled."""
        self._pending = details
        self._on_beat()
        if self._cancel is not None and self._cancel.active:
            raise self._cancel.error()


_NO_SCOPES: set[anyio.CancelScope] = set()
"""Shared, always empty: a flag's scopes until an async activity runs (``add_scope``)."""


class CancelFlag:
    """Whether (and why) an invocation was cancelled; read from activity threads.

    ``Cancelled`` is delivered once (at one durable await); what runs after it
    (compensations) is not cancelled again."""

    __slots__ = ("delivered", "reason", "scopes")

    def __init__(self) -> None:
        self.reason: str | None = None
        self.delivered = False
        self.scopes: set[anyio.CancelScope] = _NO_SCOPES  # add_scope
        """Scopes of async activity attempts in flight: cancelled by a request."""

    def add_scope(self, scope: anyio.CancelScope) -> None:
        """An async activity attempt in flight: a request cancels it."""
        if self.scopes is _NO_SCOPES:
            self.scopes = set()
        self.scopes.add(scope)

    @property
    def active(self) -> bool:
        """Requested and not yet delivered."""
        return self.reason is not None and not self.delivered

    def request(self, reason: str) -> None:
        """Record the request and cancel the async activity in flight, if any."""
        if self.reason is None:
            self.reason = reason
        for scope in list(self.scopes):
            scope.cancel()

    def error(self) -> Cancelled:
        """The error to deliver."""
        reason = self.reason or ""
        return Cancelled(f"cancelled: {reason}", reason=reason)

    def deliver(self) -> None:
        """Raise ``Cancelled`` if requested and not delivered yet (then it is delivered)."""
        if self.active:
            self.delivered = True
            raise self.error()


class _NeverCancelled(CancelFlag):
    """The flag of every plain (synchronous) invocation: it never awaits, so nothing can
    cancel it. One object for all of them (one allocation less per message), so it
    refuses any change rather than pass it on to every other invocation."""

    __slots__ = ()

    def __init__(self) -> None:
        object.__setattr__(self, "reason", None)
        object.__setattr__(self, "delivered", False)
        object.__setattr__(self, "scopes", _NO_SCOPES)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"the flag of a synchronous invocation cannot change ({name})")

    def add_scope(self, scope: anyio.CancelScope) -> None:
        """Refused: a synchronous invocation runs no async activity."""
        raise RuntimeError("a synchronous invocation runs no async activity")

    def request(self, reason: str) -> None:
        """Refused: a synchronous invocation cannot be cancelled."""
        raise RuntimeError("a synchronous invocation cannot be cancelled")


NEVER_CANCELLED: CancelFlag = _NeverCancelled()
"""The shared cancel flag of synchronous invocations (an async one gets its own)."""


def _takes_context(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params:
        return False
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    tp = hints.get(params[0].name, params[0].annotation)
    return tp is ActivityContext or tp == "ActivityContext"


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _returns(fn: Callable[..., Any]) -> object:
    try:
        tp = typing.get_type_hints(fn).get("return", Any)
    except Exception:
        return Any
    return Any if tp is type(None) else tp  # ``-> None``: cattrs has no structure hook for NoneType


async def run_activity(
    inv: StepHost,
    fn: Callable[..., Any],
    args: tuple[object, ...],
    *,
    retry: RetryPolicy | None,
    timeout: dt.timedelta | None,
    heartbeat_timeout: dt.timedelta | None,
) -> Any:
    """Run one journaled activity step of an invocation (see the module docstring)."""
    if not callable(fn):
        raise InvalidArguments(f"run() takes a function, got {fn!r:.80}")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidArguments(f"retry must be a RetryPolicy, got {retry!r:.80}")
    for label, v in (("timeout", timeout), ("heartbeat_timeout", heartbeat_timeout)):
        if v is not None and (not isinstance(v, dt.timedelta) or v <= dt.timedelta(0)):
            raise InvalidArguments(f"{label} must be a positive timedelta, got {v!r}")
    policy = retry or RetryPolicy()
    name = _name_of(fn)
    step = inv.reserve_step()
    recorded = await inv.recorded(step, "activity", name)
    kernel = inv.kernel
    codec = kernel.codec
    returns = _returns(fn)
    attempt, next_at, details = 0, None, None
    if recorded is not None:
        data = json.loads(recorded.result)
        if "ok" in data:
            return codec.converter.structure(data["ok"], returns)  # type: ignore[arg-type]
        if "failed" in data:
            f = data["failed"]
            raise ActivityFailed(
                f"activity {name} (step {step}) failed: {f['message']} (from the journal)",
                activity=name,
                cause_type=f.get("type", ""),
            )
        attempt, details = data["retry"]["attempt"], data["retry"].get("details")
        next_at = data["retry"]["next_at"]
    # injective in its parts (ids and keys may hold any character), and short enough
    # for the outside world's idempotency-key fields
    key = "act-" + digest(inv.signal.entity_type, inv.signal.entity_id, inv.signal.signal_id, step)
    clock = kernel.clock
    while True:
        if next_at is not None:
            async with inv.parked():
                await clock.sleep_until(dt.datetime.fromtimestamp(next_at, dt.UTC))
        attempt += 1
        beats = _Beats(clock.monotonic)
        actx = ActivityContext(attempt, key, details, beats.beat, clock, inv.cancel_flag, kernel.work)
        token = inv.step_started("activity", name, attempt)
        try:
            result = await _attempt(inv, fn, args, actx, beats, timeout, heartbeat_timeout)
        except Cancelled as c:
            inv.step_ended(token, "failed", c)
            inv.cancel_flag.delivered = True
            raise
        except Exception as e:
            details = actx._pending
            last = policy.exhausted(attempt) or isinstance(e, policy.non_retryable)
            inv.step_ended(token, "failed" if last else "crashed", e)
            if last:
                why = "non-retryable error" if isinstance(e, policy.non_retryable) else f"{attempt} attempts"
                msg = safe_text(f"{type(e).__name__}: {_message(e)}", 2000)
                cause = f"{type(e).__module__}.{type(e).__qualname__}"
                failed = {"failed": {"message": msg, "type": cause}}
                await inv.journal_write(step, "activity", name, json.dumps(failed))
                raise ActivityFailed(
                    f"activity {name} (step {step}) failed after {why}: {msg}",
                    activity=name,
                    cause_type=cause,
                ) from e
            when = clock.now() + policy.delay(attempt)
            next_at = when.timestamp()
            kernel.log.info(
                "activity %s attempt %d failed: %r; retry at %s",
                name,
                attempt,
                e,
                when,
                extra=_extra(inv, attempt),
            )
            state = {"retry": {"attempt": attempt, "next_at": next_at, "details": details}}
            await inv.journal_write(step, "activity", name, codec.dumps(state, what=f"activity {name} state"))
            continue
        except BaseException as e:
            inv.step_ended(token, "failed", e)
            raise
        inv.step_ended(token, "ok", None)
        try:
            text = codec.dumps({"ok": result}, dict[str, returns], what=f"result of activity {name}")  # type: ignore[valid-type]
        except (SerializationError, PayloadTooLarge) as e:
            # the side effect happened: record that the step is done (failed), so no re-run
            # calls it again, and fail it for good (a bug in the code: no retry helps)
            cause = f"{type(e).__module__}.{type(e).__qualname__}"
            msg = safe_text(f"{type(e).__name__}: {e}", 2000)
            await inv.journal_write(
                step, "activity", name, json.dumps({"failed": {"message": msg, "type": cause}})
            )
            raise ActivityFailed(
                f"activity {name} (step {step}) ran, but its result cannot be recorded: {msg}",
                activity=name,
                cause_type=cause,
            ) from e
        await inv.journal_write(step, "activity", name, text)
        return codec.converter.structure(json.loads(text)["ok"], returns)  # type: ignore[arg-type]


async def _attempt(
    inv: StepHost,
    fn: Callable[..., Any],
    args: tuple[object, ...],
    actx: ActivityContext,
    beats: _Beats,
    timeout: dt.timedelta | None,
    heartbeat_timeout: dt.timedelta | None,
) -> Any:
    clock = inv.kernel.clock
    call_args = (actx, *args) if _takes_context(fn) else args
    box: dict[str, Any] = {}
    started = clock.monotonic()  # a wall clock stepping back must not stretch a timeout

    async def body() -> None:
        try:
            with inv.kernel.work.activity():  # a virtual clock does not skip past it
                await run()
        except Exception as e:
            box["error"] = e
        tg.cancel_scope.cancel()

    async def run() -> None:
        if is_async:
            box["value"] = await fn(*call_args)
        else:
            box["value"] = await anyio.to_thread.run_sync(
                functools.partial(fn, *call_args), abandon_on_cancel=True
            )

    async def watchdog() -> None:
        limit = timeout.total_seconds() if timeout is not None else None
        beat_limit = heartbeat_timeout.total_seconds() if heartbeat_timeout is not None else None
        while True:
            limits = []
            if limit is not None:
                limits.append(started + limit)
            if beat_limit is not None:
                limits.append(beats.last() + beat_limit)
            await clock.sleep(min(limits) - clock.monotonic())
            now = clock.monotonic()
            if limit is not None and now >= started + limit:
                box["error"] = TimeoutError(f"attempt {actx.attempt} took longer than {timeout}")
                break
            if beat_limit is not None and now >= beats.last() + beat_limit:
                box["error"] = TimeoutError(f"no heartbeat within {heartbeat_timeout}")
                break
        tg.cancel_scope.cancel()

    # An async activity waits on the outside world: the system counts as idle meanwhile
    # (a virtual clock may move on). A sync one runs in a thread and counts as busy.
    is_async = inspect.iscoroutinefunction(fn)
    flag = inv.cancel_flag
    flag.deliver()
    async with contextlib.AsyncExitStack() as stack:
        if is_async:
            await stack.enter_async_context(inv.parked())
        async with anyio.create_task_group() as tg:
            if is_async:
                flag.add_scope(tg.cancel_scope)
            tg.start_soon(body)
            if timeout is not None or heartbeat_timeout is not None:
                tg.start_soon(watchdog)
        flag.scopes.discard(tg.cancel_scope)
    if "error" in box:
        raise box["error"]
    if "value" not in box and flag.active:  # cancelled in flight
        flag.delivered = True
        raise flag.error()
    return box.get("value")


class _Beats:
    """The time of the last heartbeat of one attempt, on the system's monotonic clock."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._last = now()

    def beat(self) -> None:
        self._last = self._now()

    def last(self) -> float:
        return self._last


def _message(e: BaseException) -> str:
    try:
        return str(e)
    except BaseException as err:  # a user's __str__ may raise anything
        return f"<str() failed: {type(err).__name__}>"


def _extra(inv: StepHost, attempt: int) -> dict[str, object]:
    s = inv.signal
    return {
        "entity_type": s.entity_type,
        "entity_id": s.entity_id,
        "signal_id": s.signal_id,
        "attempt": attempt,
    }
