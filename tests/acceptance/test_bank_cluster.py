"""The bank as several processes: two members and an HTTP front of two client workers.

Real processes, as the README runs them: ``python -m examples.bank.member`` twice and
``uvicorn --factory examples.bank.http:create_app --workers 2`` with ``BANK_SERVE=0``,
on a shared SQLite file and on PostgreSQL. Everything goes through HTTP: accounts,
deposits, concurrent transfers (both workers answer some), ``GET /members``. Then one
member gets SIGTERM while transfers keep coming: it leaves (status ``left``, exit 0),
the other takes its shards at once, every acknowledged transfer happened exactly once
and money is conserved.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from actors._cluster import placement
from persistence.pg_embedded import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = [f"acc-{i}" for i in range(6)]
OPENING = 1_000
LEASE_TTL = 4.0
"""The members' lease: a takeover that waited for it would take over 3 s (see below)."""
SHARDS = 256


class Proc:
    """A child process whose stderr goes to a file (shown when the test fails)."""

    def __init__(self, proc: anyio.abc.Process, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.stdout: BufferedByteReceiveStream | None = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@contextlib.asynccontextmanager
async def spawned(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> AsyncIterator[Proc]:
    """Run ``cmd`` from the repository root; kill it (and wait) on the way out if it still runs."""
    with log.open("wb") as err:
        proc = await anyio.open_process(cmd, cwd=ROOT, stderr=err, env={**os.environ, **(env or {})})
    p = Proc(proc, log)
    try:
        yield p
    finally:
        if proc.returncode is None:
            proc.kill()
        with anyio.CancelScope(shield=True):
            await proc.wait()
            await proc.aclose()


@contextlib.asynccontextmanager
async def member(db: str, name: str, tmp: Path) -> AsyncIterator[Proc]:
    """A member process, once it printed its ready line."""
    cmd = [sys.executable, "-m", "examples.bank.member", "--db", db, "--name", name]
    cmd += ["--lease-ttl", str(LEASE_TTL), "--log-level", "info"]
    async with spawned(cmd, tmp / f"{name}.log") as p:
        assert p.proc.stdout is not None
        out = BufferedByteReceiveStream(p.proc.stdout)
        try:
            with anyio.fail_after(20):
                line = (await out.receive_until(b"\n", 1 << 16)).decode()
        except (TimeoutError, anyio.EndOfStream, anyio.IncompleteRead):
            pytest.fail(f"member {name} did not get ready:\n{p.tail()}")
        assert line.startswith("ready m-"), line
        assert line.split()[2] == name, line
        p.stdout = out
        yield p


async def until(what: str, check: Callable[[], Any], deadline: float, *logs: Proc) -> Any:
    """Call ``check`` (sync or async) until it answers something true, for at most ``deadline`` s."""
    last: object = None
    with anyio.move_on_after(deadline):
        while True:
            try:
                last = check()
                if inspect.isawaitable(last):
                    last = await last
                if last:
                    return last
            except httpx.TransportError as e:  # the front is not listening yet
                last = e
            await anyio.sleep(0.05)
    pytest.fail(
        f"{what}: not within {deadline} s (last: {last!r:.500})\n" + "\n".join(p.tail() for p in logs)
    )


async def members(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/members")
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    assert {"member_id", "name", "serves", "status", "shards", "seen_ago", "me"} <= set(rows[0])
    return rows


def alive(rows: list[dict[str, Any]], serves: bool) -> list[dict[str, Any]]:
    return [m for m in rows if m["status"] == "alive" and m["serves"] is serves]


class Ledger:
    """Every transfer the test sent, and what the front answered."""

    def __init__(self) -> None:
        self.sent: dict[str, tuple[str, str, int]] = {}
        self.acked: dict[str, str] = {}  # id -> status answered (completed, failed)
        self.errors: list[str] = []
        self.rng = random.Random(7)

    def plan(self) -> dict[str, Any]:
        tid = f"t-{len(self.sent) + 1:04d}"
        source, destination = self.rng.sample(ACCOUNTS, 2)
        amount = self.rng.randint(1, 300)
        self.sent[tid] = (source, destination, amount)
        return {"id": tid, "from": source, "to": destination, "amount": amount}

    async def send(self, client: httpx.AsyncClient, t: dict[str, Any]) -> None:
        """POST the transfer; an answer with its outcome acknowledges it."""
        try:
            r = await client.post("/transfers", json=t)
        except httpx.TransportError as e:
            self.errors.append(f"{t['id']}: {e!r}")
            return
        if r.status_code == 200:
            self.acked[t["id"]] = r.json()["status"]
        elif r.status_code == 409 and r.json()["error"] == "transfer_failed":
            self.acked[t["id"]] = "failed"
        else:
            self.errors.append(f"{t['id']}: {r.status_code} {r.text[:200]}")


async def check_books(client: httpx.AsyncClient, ledger: Ledger) -> None:
    """Every transfer's outcome agrees with its answer; each moved money once; money is conserved."""
    outcome: dict[str, str] = {}
    for tid, (source, destination, amount) in ledger.sent.items():
        r = await client.get(f"/transfers/{tid}")
        if r.status_code == 404:  # never acknowledged and not run: send it again (same id, same body)
            assert tid not in ledger.acked
            r = await client.post("/transfers", json={"id": tid, "from": source, "to": destination,
                                                      "amount": amount})  # fmt: skip
            if r.status_code == 409:
                r = await client.get(f"/transfers/{tid}")
        assert r.status_code == 200, r.text
        outcome[tid] = r.json()["status"]
    for tid, status in ledger.acked.items():
        assert outcome[tid] == status, tid
    assert set(outcome.values()) <= {"completed", "failed"}
    assert list(outcome.values()).count("completed") > len(outcome) // 2  # most had the funds

    expected = dict.fromkeys(ACCOUNTS, OPENING)
    moves: dict[str, list[str]] = {a: [] for a in ACCOUNTS}
    for tid, (source, destination, amount) in ledger.sent.items():
        if outcome[tid] == "completed":
            expected[source] -= amount
            expected[destination] += amount
            moves[source].append(f"transfer {tid}")
            moves[destination].append(f"transfer {tid}")
    total = 0
    for acc in ACCOUNTS:
        view = (await client.get(f"/accounts/{acc}")).json()
        assert view["balance"] == expected[acc], acc
        assert view["entries"] == 2 + len(moves[acc]), acc  # open, deposit, one per completed transfer
        r = await client.get(f"/accounts/{acc}/statement", params={"last": 100})
        refs = [e["reference"] for e in r.json()["entries"] if e["kind"] in ("deposit", "withdrawal")]
        assert sorted(refs) == sorted(["opening", *moves[acc]]), acc  # each transfer once, nothing else
        total += view["balance"]
    assert total == OPENING * len(ACCOUNTS)


async def test_two_members_behind_a_front_of_two_workers(store_location: str, tmp_path: Path) -> None:
    with anyio.fail_after(100):  # a stuck system fails the test instead of hanging the suite
        await scenario(store_location, tmp_path)


async def scenario(store_location: str, tmp_path: Path) -> None:
    """See the module's docstring."""
    began = time.monotonic()
    port = free_port()
    front_cmd = [sys.executable, "-m", "uvicorn", "--factory", "examples.bank.http:create_app"]
    front_cmd += ["--workers", "2", "--host", "127.0.0.1", "--port", str(port)]
    env = {"BANK_DB": store_location, "BANK_SERVE": "0"}
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=0)  # a connection per request
    async with (
        member(store_location, "m1", tmp_path) as m1,
        member(store_location, "m2", tmp_path) as m2,
        spawned(front_cmd, tmp_path / "front.log", env) as front,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20, limits=limits) as client,
    ):
        procs = (m1, m2, front)

        async def balanced() -> bool:
            rows = await members(client)
            serving = alive(rows, True)
            if len(alive(rows, False)) != 2 or sorted(m["name"] for m in serving) != ["m1", "m2"]:
                return False  # the two workers (clients) and the two members have not all joined
            ids = [m["member_id"] for m in serving]
            target = collections.Counter(placement(ids, s) for s in range(SHARDS))
            return all(m["shards"] == target[m["member_id"]] > 0 for m in serving)

        # members hand shards over 32 at a time: wait until each owns its rendezvous share
        await until("both members own their shards, both workers joined", balanced, 25, *procs)

        answered: set[str] = set()  # which worker answered: the client row marked "me"

        async def both_workers_answer() -> bool:
            async def one() -> None:
                (me,) = [m for m in await members(client) if m["me"]]
                assert me["serves"] is False
                answered.add(me["member_id"])

            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(one)
            return len(answered) == 2

        await until("both workers answer requests", both_workers_answer, 10, front)

        # accounts, through the front, concurrently
        async def open_account(acc: str) -> None:
            r = await client.post(f"/accounts/{acc}/open", json={"owner": acc})
            assert r.status_code == 200, r.text
            deposit = {"amount": OPENING, "reference": "opening"}
            key = {"Idempotency-Key": f"opening/{acc}"}
            r = await client.post(f"/accounts/{acc}/deposit", json=deposit, headers=key)
            assert r.json() == {"balance": OPENING}, r.text

        async with anyio.create_task_group() as tg:
            for acc in ACCOUNTS:
                tg.start_soon(open_account, acc)

        ledger = Ledger()

        async def send_batch(n: int) -> None:
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(ledger.send, client, ledger.plan())

        for _ in range(3):
            await send_batch(8)
        assert ledger.errors == []
        assert len(ledger.acked) == 24
        await check_books(client, ledger)

        # SIGTERM one member while transfers keep coming
        stop = anyio.Event()

        async def sender() -> None:
            while not stop.is_set():
                await ledger.send(client, ledger.plan())

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(sender)
            before = len(ledger.acked)
            await until("transfers flow", lambda: len(ledger.acked) >= before + 8, 10, *procs)
            m1.proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(15):
                code = await m1.proc.wait()
            exited = time.monotonic()
            assert code == 0, m1.tail()

            async def taken_over() -> bool:
                rows = await members(client)
                (gone,) = [m for m in rows if m["name"] == "m1"]
                assert gone["status"] == "left"  # handed off, not declared dead
                return [(m["name"], m["shards"]) for m in alive(rows, True)] == [("m2", SHARDS)]

            await until("m2 owns every shard", taken_over, 10, m2, front)
            takeover = time.monotonic() - exited
            at = len(ledger.acked)
            await until("transfers flow on m2", lambda: len(ledger.acked) >= at + 8, 10, *procs)
            stop.set()

        assert m2.proc.returncode is None
        assert front.proc.returncode is None
        # lease-based takeover needs the lease to run out: over LEASE_TTL - one heartbeat (3.2 s)
        assert takeover < 2.5, takeover
        await check_books(client, ledger)
        kind = "postgres" if store_location.startswith("postgres") else "sqlite"
        print(
            f"\n{kind}: {len(ledger.sent)} transfers, "
            f"{len(ledger.acked)} acknowledged, "
            f"{len(ledger.errors)} refused during the handoff {ledger.errors[:3]}, "
            f"takeover {takeover:.2f} s after m1 left, {time.monotonic() - began:.1f} s in all"
        )
        m2.proc.send_signal(signal.SIGTERM)
        front.proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            assert await m2.proc.wait() == 0, m2.tail()
            assert await front.proc.wait() == 0, front.tail()
