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
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from actors.errors import (
    ActivityFailed,
    InvalidArguments,
    NonDeterminismError,
    PayloadTooLarge,
    SerializationError,
)
from actors.ids import digest, safe_text
from persistence.store import JournalEntry

if TYPE_CHECKING:
    from actors.context import Invocation


def _td(name: str, *, optional: bool = False) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, dt.timedelta) or value <= dt.timedelta(0):
            raise InvalidArguments(f"{name} must be a positive timedelta, got {value!r}")

    return check


@attrs.frozen
class RetryPolicy:
    """How an activity is retried. Defaults: 1 s, doubling, at most 100 s, 5 attempts."""

    initial_interval: dt.timedelta = attrs.field(
        default=dt.timedelta(seconds=1), validator=_td("initial_interval")
    )
    """Wait before the first retry."""
    backoff_coefficient: float = 2.0
    """Each wait is this many times the one before (>= 1)."""
    maximum_interval: dt.timedelta | None = attrs.field(
        default=None, validator=_td("maximum_interval", optional=True)
    )
    """Upper bound of one wait; default 100 x ``initial_interval``."""
    maximum_attempts: int = 5
    """Attempts in all, the first included (>= 1)."""
    non_retryable: tuple[type[BaseException], ...] = ()
    """Exception types that fail the activity at once."""

    def __attrs_post_init__(self) -> None:
        c = self.backoff_coefficient
        if not isinstance(c, (int, float)) or isinstance(c, bool) or not c >= 1:
            raise InvalidArguments(f"backoff_coefficient must be a number >= 1, got {c!r}")
        m = self.maximum_attempts
        if not isinstance(m, int) or isinstance(m, bool) or m < 1:
            raise InvalidArguments(f"maximum_attempts must be an int >= 1, got {m!r}")
        if self.maximum_interval is not None and self.maximum_interval < self.initial_interval:
            raise InvalidArguments("maximum_interval must not be shorter than initial_interval")
        nr = self.non_retryable
        if not isinstance(nr, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in nr
        ):
            raise InvalidArguments(f"non_retryable must be a tuple of exception types, got {nr!r}")

    def delay(self, attempt: int) -> dt.timedelta:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        cap = self.maximum_interval or self.initial_interval * 100
        try:
            secs = self.initial_interval.total_seconds() * self.backoff_coefficient ** (attempt - 1)
        except OverflowError:  # a long run of retries (compensations retry without end)
            return cap
        return cap if secs >= cap.total_seconds() else dt.timedelta(seconds=secs)


class ActivityContext:
    """What an activity function may ask about its run; thread-safe for sync functions."""

    def __init__(
        self, attempt: int, idempotency_key: str, details: object, on_beat: Callable[[], None]
    ) -> None:
        self.attempt = attempt
        """This attempt's number, 1 for the first."""
        self.idempotency_key = idempotency_key
        """The same on every attempt and re-run of this step: hand it to the outside world."""
        self.heartbeat_details = details
        """The details of the last heartbeat of an earlier attempt (None if none)."""
        self._on_beat = on_beat
        self._pending: object = details

    def heartbeat(self, details: object = None) -> None:
        """Report progress; ``details`` reach the next attempt if this one fails."""
        self._pending = details
        self._on_beat()


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
    inv: Invocation,
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
    system = inv.actor.system
    codec = system.codec
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
    clock = system.clock
    while True:
        if next_at is not None:
            async with inv.parked():
                await clock.sleep_until(dt.datetime.fromtimestamp(next_at, dt.UTC))
        attempt += 1
        beats = _Beats(clock.monotonic)
        actx = ActivityContext(attempt, key, details, beats.beat)
        try:
            result = await _attempt(inv, fn, args, actx, beats, timeout, heartbeat_timeout)
        except Exception as e:
            details = actx._pending
            last = attempt >= policy.maximum_attempts or isinstance(e, policy.non_retryable)
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
            system.log.info("activity %s attempt %d failed: %r; retry at %s", name, attempt, e, when)
            state = {"retry": {"attempt": attempt, "next_at": next_at, "details": details}}
            await inv.journal_write(step, "activity", name, codec.dumps(state, what=f"activity {name} state"))
            continue
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
    inv: Invocation,
    fn: Callable[..., Any],
    args: tuple[object, ...],
    actx: ActivityContext,
    beats: _Beats,
    timeout: dt.timedelta | None,
    heartbeat_timeout: dt.timedelta | None,
) -> Any:
    system = inv.actor.system
    clock = system.clock
    call_args = (actx, *args) if _takes_context(fn) else args
    box: dict[str, Any] = {}
    started = clock.monotonic()  # a wall clock stepping back must not stretch a timeout

    async def body() -> None:
        try:
            if is_async:
                box["value"] = await fn(*call_args)
            else:
                box["value"] = await anyio.to_thread.run_sync(
                    functools.partial(fn, *call_args), abandon_on_cancel=True
                )
        except Exception as e:
            box["error"] = e
        tg.cancel_scope.cancel()

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
    async with contextlib.AsyncExitStack() as stack:
        if is_async:
            await stack.enter_async_context(inv.parked())
        async with anyio.create_task_group() as tg:
            tg.start_soon(body)
            if timeout is not None or heartbeat_timeout is not None:
                tg.start_soon(watchdog)
    if "error" in box:
        raise box["error"]
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


def check_step(inv: Invocation, step: int, recorded: JournalEntry, kind: str, name: str) -> None:
    """Raise NonDeterminismError when a journaled step differs from what is asked now."""
    if (recorded.kind, recorded.name) != (kind, name):
        raise NonDeterminismError(
            f"step {step} of {inv.signal.entity_type}/{inv.signal.entity_id}.{inv.signal.handler}: "
            f"the journal holds {recorded.kind} {recorded.name!r} but this run asks for "
            f"{kind} {name!r}"
        )
