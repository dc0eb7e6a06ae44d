"""The runtime's side of the observer seam: an observer that raises is logged once
and ignored, so an observer's bug never changes what the runtime does. Internal."""

from __future__ import annotations

import logging
from typing import Any

from actors.observe import NO_OBSERVER, InvocationInfo, Observer, Outcome


class SafeObserver:
    """Calls an :class:`~actors.observe.Observer`, swallowing (and logging once) its errors.

    ``active`` is False for the default observer: the runtime then skips building
    what it would hand over.
    """

    __slots__ = ("_inner", "_log", "_logged", "active")

    def __init__(self, inner: Observer, log: logging.Logger) -> None:
        self._inner = inner
        self._log = log
        self._logged = False
        self.active = inner is not NO_OBSERVER

    def _failed(self, point: str) -> None:
        if not self._logged:
            self._logged = True
            self._log.exception("the observer failed in %s; its errors are ignored from now on", point)

    def _call(self, point: str, *args: Any) -> Any:
        try:
            return getattr(self._inner, point)(*args)
        except Exception:
            self._failed(point)
            return None

    def carry(self) -> str | None:
        """The trace context to store with a new signal (None when none or on error)."""
        if not self.active:
            return None
        got = self._call("carry")
        return got if isinstance(got, str) else None

    def invocation_started(self, info: InvocationInfo) -> object:
        """See ``Observer.invocation_started``."""
        return self._call("invocation_started", info)

    def invocation_ended(self, token: object, outcome: Outcome, error: BaseException | None) -> None:
        """See ``Observer.invocation_ended``."""
        self._call("invocation_ended", token, outcome, error)

    def step_started(self, token: object, kind: str, name: str, attempt: int) -> object:
        """See ``Observer.step_started``."""
        return self._call("step_started", token, kind, name, attempt)

    def step_ended(self, step: object, outcome: Outcome, error: BaseException | None) -> None:
        """See ``Observer.step_ended``."""
        self._call("step_ended", step, outcome, error)

    def retry_scheduled(self, info: InvocationInfo, delay: float, error: BaseException) -> None:
        """See ``Observer.retry_scheduled``."""
        self._call("retry_scheduled", info, delay, error)

    def dead_lettered(self, info: InvocationInfo, error: BaseException) -> None:
        """See ``Observer.dead_lettered``."""
        self._call("dead_lettered", info, error)

    def committed(self, writes: int, seconds: float, failed: bool) -> None:
        """See ``Observer.committed``."""
        if self.active:
            self._call("committed", writes, seconds, failed)

    def timer_fired(self, entity_type: str, entity_id: str, key: str, lag: float) -> None:
        """See ``Observer.timer_fired``."""
        if self.active:
            self._call("timer_fired", entity_type, entity_id, key, lag)
