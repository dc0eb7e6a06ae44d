"""Guarantee 3 (exactly-once effect) when a commit lands but its answer is lost.

A commit whose connection dies before the answer (PostgreSQL's ``CommitUnknown``, a
server restart) may be in the database all the same. The runtime rebuilds the actor
from the store and runs an inbox signal again; a keyed signal's second run finds its
processed mark, and an unkeyed one's (a plain ``tell``) finds its inbox row gone: the
store refuses the commit (``SignalTaken``) and the signal is done, applied once.
Found by the fault harness (``python -m bench.cluster_faults``): "nonce applied 2
times" after a database restart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from actors import ActorSystem, CommitUnknown, SupervisorPolicy
from actors.testing import VirtualClock
from persistence import MemoryStore, SqliteStore
from persistence.store import Commit, Write, WriteResult
from tests.actors.support import Probe, event_count, make_counter
from tests.actors.test_layers import Recording

pytestmark = pytest.mark.anyio

S = dt.timedelta(seconds=1)


class _LosesOneAnswer:
    """A store whose first commit of ``Counter/c`` from the inbox lands, then raises
    CommitUnknown, as a connection lost right after COMMIT does."""

    lost = 0

    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        results: list[WriteResult] = await super().write(batch)  # type: ignore[misc]
        if not self.lost and any(
            isinstance(w, Commit) and w.entity_id == "c" and w.from_inbox and w.events for w in batch
        ):
            self.lost += 1
            raise CommitUnknown("write: the connection was lost while committing (test); outcome unknown")
        return results


class _SqliteLoses(_LosesOneAnswer, SqliteStore):
    pass


class _MemoryLoses(_LosesOneAnswer, MemoryStore):
    pass


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_a_tell_whose_commit_landed_unanswered_is_applied_once(tmp_path: Path, kind: str) -> None:
    clock = VirtualClock()
    store: Any = _SqliteLoses(tmp_path / "a.db") if kind == "sqlite" else _MemoryLoses()
    seen = Recording()
    system = ActorSystem(
        store,
        [make_counter(Probe())],
        clock=clock,
        supervision=SupervisorPolicy(initial_backoff=S),
        observer=seen,
    )
    async with system:
        ref: Any = system.ref("Counter", "c")
        await ref.tell("add", 5)
        await clock.advance(10 * S)  # the retry after the store failure's backoff
        assert store.lost == 1  # the first run's commit landed, and its answer was lost
        assert await ref.ask("barrier") == 5
        assert await event_count(system, "Counter", "c") == 1
        assert await system.store.read_inbox(after=0, limit=10) == []
        assert await system.dead_letters() == []
        assert await ref.query("get_total") == 5
    # add (answer lost: crashed), add again (duplicate: dropped), barrier
    assert [c[2] for c in seen.calls if c[0] == "ended"] == ["crashed", "duplicate", "ok"]
