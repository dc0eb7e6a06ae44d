"""Guarantee 3 (exactly-once effect) when a commit lands but its answer is lost, or
another run of the same inbox signal commits first.

A commit whose connection dies before the answer (PostgreSQL's ``CommitUnknown``, a
server restart) may be in the database all the same. The runtime rebuilds the actor
from the store and runs the inbox signal again: a keyed signal looks for its processed
mark first and is answered from it; an unkeyed one (a plain ``tell``) has no mark, and
its second run finds its inbox row gone: the store refuses the commit (``SignalTaken``)
and the signal is done, applied once. Found by the fault harness (``python -m
bench.cluster_faults``): "nonce applied 2 times" after a database restart; and a keyed
signal in that position retried forever ("already processed") before it looked for its
mark again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from actors import ActorSystem, CommitUnknown, Entity, SupervisorPolicy, applies, query, signal
from actors.testing import VirtualClock
from persistence import MemoryStore, PostgresStore, SqliteStore
from persistence.store import Commit, Write, WriteResult, replace
from tests.actors.support import Outcome, Probe, event_count, make_counter
from tests.actors.test_layers import Recording

pytestmark = pytest.mark.anyio

S = dt.timedelta(seconds=1)


def _first_take(batch: Sequence[Write]) -> Commit | None:
    """The commit of ``batch`` that takes a signal of Counter/c from the inbox, if any."""
    for w in batch:
        if isinstance(w, Commit) and w.entity_id == "c" and w.from_inbox and w.events:
            return w
    return None


class _LosesOneAnswer:
    """The first commit taking a signal of ``Counter/c`` from the inbox lands, then
    raises CommitUnknown, as a connection lost right after COMMIT does."""

    hits = 0

    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        results: list[WriteResult] = await super().write(batch)  # type: ignore[misc]
        if not self.hits and _first_take(batch) is not None:
            self.hits += 1
            raise CommitUnknown("write: the connection was lost while committing (test); outcome unknown")
        return results


class _RunElsewhereFirst:
    """Before the first commit taking a signal of ``Counter/c`` from the inbox, another
    run of that signal commits (as a second member would): it emitted nothing, and took
    the signal, with its mark if keyed."""

    hits = 0

    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        c = _first_take(batch)
        if not self.hits and c is not None:
            self.hits += 1
            other = replace(c, events=(), outcome='{"ok":0}')
            await super().write([other])  # type: ignore[misc]
        results: list[WriteResult] = await super().write(batch)  # type: ignore[misc]
        return results


def _store(kind: str, mixin: type, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    base: type = {"sqlite": SqliteStore, "memory": MemoryStore, "postgres": PostgresStore}[kind]
    cls = type(f"{mixin.__name__}{base.__name__}", (mixin, base), {})
    if kind == "sqlite":
        return cls(tmp_path / "a.db")
    if kind == "postgres":
        return cls(request.getfixturevalue("pg_dsn"))
    return cls()


async def _tell_once(store: Any, keyed: bool) -> tuple[int, int, object, list[str]]:
    """Tell ``add 5`` to Counter/c (keyed or not) and let its retries run: the total and
    event count after, a keyed repeat's answer, and how each invocation ended."""
    clock = VirtualClock()
    seen = Recording()
    policy = SupervisorPolicy(initial_backoff=S)
    counter = make_counter(Probe())
    async with ActorSystem(store, [counter], clock=clock, supervision=policy, observer=seen) as system:
        ref: Any = system.ref("Counter", "c")
        await (ref.options(key="k1") if keyed else ref).tell("add", 5)
        await clock.advance(10 * S)  # the retry after a store failure's backoff
        assert store.hits == 1
        total = await ref.ask("barrier")
        events = await event_count(system, "Counter", "c")
        assert await system.store.read_inbox(after=0, limit=10) == []
        assert await system.dead_letters() == []
        again = await ref.options(key="k1").ask("add", 5) if keyed else None
    return total, events, again, [c[2] for c in seen.calls if c[0] == "ended"]


@pytest.mark.parametrize("kind", ["sqlite", "memory", "postgres"])
@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed", "keyed"])
@pytest.mark.parametrize(
    ("mixin", "kept", "ended"),
    [
        # the first run's commit landed unanswered: it is the one kept; a keyed second
        # run finds its mark and is answered from it, an unkeyed one's commit is refused
        (_LosesOneAnswer, 5, {False: ["crashed", "duplicate", "ok"], True: ["crashed", "ok"]}),
        # another run (which emitted nothing) committed first: nothing of this one is kept
        (_RunElsewhereFirst, 0, {False: ["duplicate", "ok"]}),
    ],
    ids=["answer-lost", "elsewhere-first"],
)
async def test_a_tell_is_applied_once_whichever_run_committed(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    kind: str,
    keyed: bool,
    mixin: type,
    kept: int,
    ended: dict[bool, list[str]],
) -> None:
    total, events, again, how = await _tell_once(_store(kind, mixin, tmp_path, request), keyed)
    assert (total, events) == (kept, 1 if kept else 0)
    if keyed:
        assert again == kept  # a repeat of the key: the committed run's outcome
    if keyed in ended:  # (a keyed run elsewhere first: refused by the mark or the inbox, by store)
        assert how == ended[keyed]


@attrs.frozen
class Worked:
    n: int


def _double(n: int) -> int:
    return 2 * n


@attrs.define
class Job(Entity):
    """A handler with a journaled step: its signal is in the inbox when it commits."""

    done: int = 0

    @signal
    async def work(self, n: int) -> int:
        got = await self.run(_double, n)
        self.emit(Worked(got))
        return self.done

    @query
    def done_so_far(self) -> int:
        return self.done

    @applies
    def _worked(self, e: Worked) -> None:
        self.done += e.n


@pytest.mark.parametrize("kind", ["sqlite", "memory", "postgres"])
@pytest.mark.parametrize("mixin", [_LosesOneAnswer, _RunElsewhereFirst], ids=["lost", "elsewhere"])
async def test_a_keyed_ask_is_answered_from_the_mark_of_the_run_that_committed(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str, mixin: type
) -> None:
    """A keyed ask whose journaled run's final commit landed unanswered, or whose signal
    another run committed first: the caller gets the committed run's answer (from its
    mark), not an error, and nothing is applied twice."""
    clock = VirtualClock()
    store = _store(kind, mixin, tmp_path, request)
    policy = SupervisorPolicy(initial_backoff=S)
    async with ActorSystem(store, [Job], clock=clock, supervision=policy) as system:
        ref = system.ref(Job, "c")
        out = Outcome()
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.capture, lambda: ref.options(key="j1").ask(Job.work, 3))
            await clock.advance(10 * S)
        assert store.hits == 1
        first = 6 if mixin is _LosesOneAnswer else 0  # what the committed run answered
        assert out.error is None
        assert out.value == first
        assert await ref.query(Job.done_so_far) == first
        assert await system.store.read_inbox(after=0, limit=10) == []
        assert await event_count(system, "Job", "c") == (1 if first else 0)
