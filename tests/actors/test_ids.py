"""Generated signal ids stay unique across processes, forked ones included.

An ask or tell without a key gets a generated id, ``g:`` + a random boot prefix + a
counter. A process forked after ``actors`` was imported (a pre-forking server, a
``multiprocessing`` pool with the ``fork`` start method) would otherwise continue
the parent's prefix and counter: its first tell to an entity would get the id of
the parent's next one, and the store would refuse the second of the two (a second
inbox row with the same id: a ``StoreError`` for a call that did nothing wrong).
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from actors import ActorSystem
from actors._ids import generated_id
from persistence import SqliteStore
from tests.models import Account


def _in_a_forked_child(make: int) -> list[str]:
    """``make`` generated ids from a child forked now (read through a pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its ids, exit without running anything of pytest's
        try:
            os.write(w, "\n".join(generated_id() for _ in range(make)).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return text.split("\n")


def test_a_forked_child_generates_ids_of_its_own() -> None:
    child = _in_a_forked_child(3)
    parent = [generated_id() for _ in range(3)]
    assert len(set(child)) == 3
    assert not set(child) & set(parent), (child, parent)
    assert child[0].split(":")[1][:16] != parent[0].split(":")[1][:16]  # another prefix


async def _tell_as_client(db: Path, amount: int) -> None:
    """Accept a deposit into the store's inbox, as a client that runs nothing."""
    async with ActorSystem(SqliteStore(db, shared=True), entities=[Account], serve=False) as client:
        await client.ref(Account, "a").tell(Account.deposit, amount)


def test_tells_of_a_parent_and_its_forked_child_are_all_applied(tmp_path: Path) -> None:
    """The consequence end to end: a forked child and then its parent each accept one
    unkeyed tell to the same entity (clients: both stay pending in the inbox); a
    system then runs both. With the parent's ids in the child, the parent's tell
    failed: its id was the child's, already in the inbox."""
    db = tmp_path / "f.db"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            anyio.run(_tell_as_client, db, 2)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    anyio.run(_tell_as_client, db, 1)

    async def run_both() -> int:
        async with ActorSystem(SqliteStore(db, shared=True), entities=[Account]) as system:
            await system.wait_idle()
            return await system.ref(Account, "a").query(Account.get_balance)

    assert anyio.run(run_both) == 3
