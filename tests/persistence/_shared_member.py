"""A member process for the tests of ``SqliteStore(path, shared=True)``.

Run as ``python -m tests.persistence._shared_member MODE DB OUT ...``; it reports by
appending lines to the file OUT (flushed at once), so the test can wait on them:

- ``hold DB OUT TTL SHARD...``: join, claim the shards, write ``ready {json}``, then
  heartbeat until killed.
- ``zombie DB OUT TTL fence|nofence ENTITY...``: join, claim the shards of the
  entities (``Z/<id>``), set the fence (unless ``nofence``), then commit one event per
  entity per batch in a loop, each event carrying the epoch it was written under;
  after each batch write ``ack <epoch-by-id json> <seq>`` or ``lost <shards>``. It keeps
  going after losing its shards (a zombie) until killed.
- ``writer DB OUT NAME N``: N batches, each accepting 10 signals for ``W/<NAME>-<k>``
  and committing one event to ``W/<NAME>``; then ``done``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import anyio.lowlevel

from persistence.errors import ShardLost
from persistence.sqlite import SqliteStore
from persistence.store import Accept, Commit, NewEvent, SignalRecord, shard_of


def _say(out: Path, line: str) -> None:
    with out.open("a") as f:
        f.write(line + "\n")
        f.flush()


def _signal(entity_type: str, entity_id: str, sid: str) -> SignalRecord:
    return SignalRecord(entity_type, entity_id, sid, "h", "{}", "fp", 1.0)


async def _heartbeats(store: SqliteStore, member: str, every: float) -> None:
    while True:
        await store.heartbeat(member)  # a zombie ignores the answer
        await anyio.sleep(every)


async def hold(db: str, out: Path, ttl: float, shards: list[int]) -> None:
    async with SqliteStore(db, shared=True) as store:
        await store.join("holder", "holder", serves=True, ttl=ttl)
        got = await store.claim("holder", shards)
        _say(out, "ready " + json.dumps(got))
        await _heartbeats(store, "holder", ttl / 5)


async def zombie(db: str, out: Path, ttl: float, fence: bool, ids: list[str]) -> None:
    async with SqliteStore(db, shared=True) as store, anyio.create_task_group() as tg:
        await store.join("zombie", "zombie", serves=True, ttl=ttl)
        n = store.shard_count
        wanted = sorted({shard_of("Z", i, n) for i in ids})
        epochs = await store.claim("zombie", wanted)
        assert sorted(epochs) == wanted, (epochs, wanted)
        if fence:
            store.set_fence("zombie", epochs)
        tg.start_soon(_heartbeats, store, "zombie", ttl / 5)
        by_id = {i: epochs[shard_of("Z", i, n)] for i in ids}
        seq = 0
        while True:
            seq += 1
            batch = [
                Commit(
                    "Z",
                    i,
                    _signal("Z", i, f"s{seq}"),
                    "{}",
                    seq,
                    (NewEvent("W", 1, json.dumps({"epoch": by_id[i]})),),
                    mark=False,
                    from_inbox=False,
                )
                for i in ids
            ]
            try:
                await store.write(batch)
            except ShardLost as e:
                seq -= 1
                _say(out, f"lost {sorted(e.shards)}")
            else:
                _say(out, f"ack {seq}")
            await anyio.lowlevel.checkpoint()


async def writer(db: str, out: Path, name: str, n: int) -> None:
    async with SqliteStore(db, shared=True) as store:
        for k in range(n):
            accepts: list[Accept | Commit] = [
                Accept(_signal("W", f"{name}-{k}", f"{name}-{k}-{j}")) for j in range(10)
            ]
            commit = Commit(
                "W",
                name,
                _signal("W", name, f"c{k}"),
                "{}",
                k + 1,
                (NewEvent("W", 1, "{}"),),
                from_inbox=False,
            )
            await store.write([*accepts, commit])
        _say(out, "done")


def main(argv: list[str]) -> None:
    mode, db, out = argv[0], argv[1], Path(argv[2])
    rest = argv[3:]
    if mode == "hold":
        anyio.run(hold, db, out, float(rest[0]), [int(s) for s in rest[1:]])
    elif mode == "zombie":
        anyio.run(zombie, db, out, float(rest[0]), rest[1] == "fence", rest[2:])
    elif mode == "writer":
        anyio.run(writer, db, out, rest[0], int(rest[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
