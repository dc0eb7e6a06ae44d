"""Guarantee 2: a returned ``tell`` is on disk; a returned ``ask`` has its events on disk.

Checked by reading the SQLite file with the plain ``sqlite3`` module, next to the
running system, right after the call returns.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from actors import ActorSystem
from persistence import SqliteStore
from tests.actors.support import Probe, make_counter, sql
from tests.models import Account

pytestmark = pytest.mark.anyio


def inbox_rows(path: Path, entity_id: str) -> list[tuple[str, dict[str, object]]]:
    rows = sql(path, "SELECT handler, args FROM inbox WHERE entity_id = ? ORDER BY position", entity_id)
    return [(h, json.loads(a)) for h, a in rows]


def event_rows(path: Path, entity_id: str) -> list[tuple[int, str, dict[str, object]]]:
    rows = sql(path, "SELECT seq, type_name, data FROM events WHERE entity_id = ? ORDER BY seq", entity_id)
    return [(seq, name, json.loads(data)) for seq, name, data in rows]


async def test_tell_is_in_the_inbox_file_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(SqliteStore(path), [counter]) as system:
        ref = system.ref(counter, "c")
        await ref.tell("hold", 5)  # its handler blocks on the gate: it cannot be taken yet
        assert inbox_rows(path, "c") == [("hold", {"amount": 5})]
        await ref.tell("add", 7)  # queued behind it
        assert inbox_rows(path, "c") == [("hold", {"amount": 5}), ("add", {"amount": 7})]
        assert event_rows(path, "c") == []
        probe.gate.set()
        assert await ref.ask("barrier") == 12
        assert inbox_rows(path, "c") == []
        assert [data for _s, _n, data in event_rows(path, "c")] == [{"amount": 5}, {"amount": 7}]


async def test_every_returned_tell_is_in_the_file(tmp_path: Path) -> None:
    """Without a gate: each returned tell is either still in the inbox or applied."""
    path = tmp_path / "d.db"
    async with ActorSystem(SqliteStore(path), [Account]) as system:
        ref = system.ref(Account, "a")
        for amount in range(1, 21):
            await ref.tell(Account.deposit, amount)
            pending = [args["amount"] for _h, args in inbox_rows(path, "a")]
            applied = [data["amount"] for _s, _n, data in event_rows(path, "a")]
            assert sorted(pending + applied) == list(range(1, amount + 1))


async def test_ask_events_are_in_the_file_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    async with ActorSystem(SqliteStore(path), [Account]) as system:
        ref = system.ref(Account, "a")
        assert await ref.ask(Account.deposit, 100) == 100
        assert event_rows(path, "a") == [(1, "tests.models.Deposited", {"amount": 100})]
        assert await ref.ask(Account.withdraw, 30) == 70
        assert event_rows(path, "a")[1:] == [(2, "tests.models.Withdrawn", {"amount": 30})]


async def test_keyed_ask_outcome_is_in_the_file_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    async with ActorSystem(SqliteStore(path), [Account]) as system:
        ref = system.ref(Account, "a")
        assert await ref.options(key="dep-1").ask(Account.deposit, 40) == 40
        marks = sql(path, "SELECT signal_id, outcome FROM processed WHERE entity_id = 'a'")
        assert marks == [("k:dep-1", json.dumps({"ok": 40}, separators=(",", ":")))]
        assert len(event_rows(path, "a")) == 1


async def test_acknowledged_tells_survive_an_abrupt_stop(tmp_path: Path) -> None:
    """The system is torn down (cancelled) with tells pending: the file keeps them."""
    path = tmp_path / "d.db"
    probe = Probe()
    counter = make_counter(probe)
    with anyio.CancelScope() as scope:
        async with ActorSystem(SqliteStore(path), [counter]) as system:
            ref = system.ref(counter, "c")
            await ref.tell("hold", 1)
            for amount in (2, 3, 4):
                await ref.tell("add", amount)
            scope.cancel()
            await anyio.sleep_forever()
    assert [args["amount"] for _h, args in inbox_rows(path, "c")] == [1, 2, 3, 4]
    probe2 = Probe()
    probe2.gate.set()
    counter2 = make_counter(probe2)
    async with ActorSystem(SqliteStore(path), [counter2]) as system:
        assert await system.ref(counter2, "c").ask("barrier") == 10
    assert inbox_rows(path, "c") == []
