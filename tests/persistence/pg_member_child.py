"""A member process for the PostgreSQL fencing tests (run by test_postgres_shared.py).

``python -m tests.persistence.pg_member_child DSN MEMBER_ID MODE TTL [STOP_AFTER]``

It joins as ``MEMBER_ID`` with lease ``TTL``, claims every shard, and (``MODE`` ``fenced``)
fences its writes with the epochs it got; ``unfenced`` never calls ``set_fence`` (the
negative control). It heartbeats every TTL/4 and commits batches in a loop: one event
per entity of ``ENTITIES``, each event carrying the epoch of its entity's shard and the
batch number. It prints one line per outcome, flushed: ``ack N``, ``lost N SHARDS`` or
``error N KIND``. It behaves as a zombie: a refused heartbeat or write does not stop
it, and after ``ShardLost`` it sets its old epochs again and keeps trying.

With ``STOP_AFTER`` it stops itself (SIGSTOP) inside the transaction of the batch after
that many acknowledged batches, right after the fence check: a paused member that
holds row locks on the ``shards`` table. Its batches then also accept a signal, so each
is a transaction of several statements (a batch of commits alone is one statement,
with nothing in between to stop in).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence

import anyio

from persistence import PostgresStore, StoreError
from persistence.errors import ShardLost
from persistence.store import Accept, Commit, NewEvent, SignalRecord, Write, WriteResult, shard_of

ENTITIES = [f"acct-{n}" for n in range(8)]


def say(*words: object) -> None:
    print(*words, flush=True)


async def main(dsn: str, member: str, mode: str, ttl: float, stop_after: int | None) -> None:
    store = PostgresStore(dsn, idle_in_transaction_timeout=1.0)
    async with store:
        await store.join(member, f"child pid={os.getpid()}", serves=True, ttl=ttl)
        epochs = await store.claim(member, range(store.shard_count))
        if mode == "fenced":
            store.set_fence(member, epochs)
        say("claimed", json.dumps(epochs))
        acked = 0
        stopping = False
        real_apply = store._apply_run

        async def apply_then_maybe_stop(db: object, run: Sequence[Write]) -> list[WriteResult]:
            nonlocal stopping
            if stopping:
                stopping = False
                say("stopping")
                os.kill(os.getpid(), signal.SIGSTOP)  # inside the transaction, locks held
            return await real_apply(db, run)

        store._apply_run = apply_then_maybe_stop  # type: ignore[method-assign]

        async def beat() -> None:
            while True:
                await anyio.sleep(ttl / 4)
                with contextlib.suppress(StoreError):
                    await store.heartbeat(member)

        seqs = dict.fromkeys(ENTITIES, 0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(beat)
            n = 0
            while True:
                n += 1
                if stop_after is not None and acked == stop_after:
                    stopping = True
                batch: list[Write] = []
                for e in ENTITIES:
                    epoch = epochs[shard_of("Account", e, store.shard_count)]
                    data = json.dumps({"epoch": epoch, "n": n, "member": member})
                    s = SignalRecord("Account", e, f"s-{member}-{n}", "deposit", "{}", "fp", 1.0)
                    batch.append(
                        Commit(
                            "Account",
                            e,
                            s,
                            "{}",
                            seqs[e] + 1,
                            (NewEvent("T", 1, data),),
                            1.0,
                            mark=False,
                            from_inbox=False,
                        )
                    )
                if stop_after is not None:
                    extra = SignalRecord("Account", ENTITIES[0], f"a-{member}-{n}", "h", "{}", "fp", 1.0)
                    batch.append(Accept(extra))
                try:
                    await store.write(batch)
                except ShardLost as lost:
                    say("lost", n, ",".join(str(s) for s in sorted(lost.shards)))
                    store.set_fence(member, epochs)  # insist on the old epochs: the store must still refuse
                except StoreError as err:
                    say("error", n, type(err).__name__)
                else:
                    acked += 1
                    for e in ENTITIES:
                        seqs[e] += 1
                    say("ack", n)
                await anyio.sleep(0.002)


if __name__ == "__main__":
    dsn, member, mode, ttl = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    stop = int(sys.argv[5]) if len(sys.argv) > 5 else None
    anyio.run(main, dsn, member, mode, ttl, stop)
