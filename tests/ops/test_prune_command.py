"""``actors prune``: forgets old marks and dead letters; refuses a live database and bad input."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from actors.cli import duration, main
from persistence import PostgresStore, SqliteStore, Store
from persistence.store import Accept, Commit, Journal, JournalEntry, SignalRecord

DAY = 86400.0


def sig(sid: str, entity_id: str = "a") -> SignalRecord:
    return SignalRecord("Account", entity_id, sid, "deposit", "{}", f"fp-{sid}", 1.0)


def done(s: SignalRecord, at: float, **kw: object) -> Commit:
    kw.setdefault("from_inbox", False)  # its signal was never accepted (nothing to take)
    return Commit(s.entity_type, s.entity_id, s, '{"ok":null}', 1, recorded_at=at, **kw)  # type: ignore[arg-type]


async def populate(store: Store, now: float) -> None:
    """Marks 10 days and 1 hour old, one of a signal still queued; dead letters 100d, 2d, 1h
    old; a journal step of a finished invocation (orphaned) 10 days old."""
    old, new, queued = sig("old"), sig("new", "b"), sig("queued", "c")
    await store.write([Accept(old), Accept(new), Accept(queued)])
    await store.write(
        [
            done(old, now - 10 * DAY, from_inbox=True),
            done(new, now - 3600, from_inbox=True),
            done(queued, now - 10 * DAY),
        ]
    )
    for n, age in enumerate((100 * DAY, 2 * DAY, 3600.0)):
        await store.write([done(sig(f"dead{n}", f"d{n}"), now - age, dead_letter=("boom", "tb", 3))])
    step = JournalEntry("Account", "z", "gone", 0, "activity", "charge", "{}", now - 10 * DAY)
    await store.write([Journal(step)])


async def contents(store: Store) -> tuple[list[str], list[str], int]:
    """(marked ids, dead-lettered ids, orphaned journal steps)."""
    marked = [
        sid
        for eid, sid in (
            ("a", "old"),
            ("b", "new"),
            ("c", "queued"),
            ("d0", "dead0"),
            ("d1", "dead1"),
            ("d2", "dead2"),
        )
        if await store.read_mark("Account", eid, sid) is not None
    ]
    dead = [d.signal.signal_id for d in await store.read_dead_letters(limit=100)]
    return marked, dead, len(await store.read_journal("Account", "z", "gone"))


def sqlite_db(tmp_path: Path) -> Path:
    db = tmp_path / "p.db"

    async def go() -> None:
        async with SqliteStore(db) as store:
            await populate(store, time.time())

    anyio.run(go)
    return db


def read(where: Path | str) -> tuple[list[str], list[str], int]:
    async def go() -> tuple[list[str], list[str], int]:
        store = SqliteStore(where) if isinstance(where, Path) else PostgresStore(where)
        async with store:
            return await contents(store)

    return anyio.run(go)


ALL = ["old", "new", "queued", "dead0", "dead1", "dead2"]


def test_prune_by_age_and_count_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite_db(tmp_path)
    assert read(db) == (ALL, ["dead0", "dead1", "dead2"], 1)
    before = time.time()
    argv = ["prune", str(db), "--marks-older-than", "7d", "--dead-letters-older-than", "30d", "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    # old marks: "old" and dead0 (100 days); "queued" is still in the inbox; one journal step
    assert (doc["marks"], doc["dead_letters"], doc["journals"]) == (2, 1, 1)
    cutoff = doc["marks_before"]
    assert cutoff.endswith("+00:00")
    assert abs(_epoch(cutoff) - (before - 7 * DAY)) < 60
    assert doc["keep_dead_letters"] is None
    assert read(db) == (["new", "queued", "dead1", "dead2"], ["dead1", "dead2"], 0)
    assert main(["prune", str(db), "--keep-dead-letters", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dead_letters"] == 1
    assert read(db)[1] == ["dead2"]


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp()


def test_prune_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite_db(tmp_path)
    assert main(["prune", str(db), "--marks-older-than", "1d", "--keep-dead-letters", "0"]) == 0
    out = capsys.readouterr().out
    rows = {
        m[1]: int(m[2]) for m in re.finditer(r"(processed marks|dead letters|journal steps)\s*│\s*(\d+)", out)
    }
    assert rows == {"processed marks": 3, "dead letters": 3, "journal steps": 1}, out  # old, dead0, dead1
    assert "beyond the newest 0" in out


def test_nothing_to_prune_is_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite_db(tmp_path)
    assert (
        main(["prune", str(db), "--marks-older-than", "365d", "--dead-letters-older-than", "365d", "--json"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert (doc["marks"], doc["dead_letters"], doc["journals"]) == (0, 0, 0)
    assert read(db) == (ALL, ["dead0", "dead1", "dead2"], 1)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * DAY), ("12h", 12 * 3600), ("90m", 5400), ("45s", 45), ("0s", 0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(text).total_seconds() == seconds


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--marks-older-than", "30"),
        ("--marks-older-than", "d"),
        ("--marks-older-than", "1.5d"),
        ("--marks-older-than", "1w"),
        ("--marks-older-than", "1D"),
        ("--marks-older-than", " 1d"),
        ("--marks-older-than", "1d12h"),
        ("--marks-older-than", "\u0663d"),  # an Arabic-Indic digit: only 0-9 count
        ("--dead-letters-older-than", "-1d"),
        ("--dead-letters-older-than", "9999999999d"),
        ("--keep-dead-letters", "-1"),
        ("--keep-dead-letters", "1.5"),
        ("--keep-dead-letters", "ten"),
        ("--keep-dead-letters", "99999999999999999999"),
    ],
)
def test_bad_options_are_usage_errors_that_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    db = sqlite_db(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["prune", str(db), f"{option}={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err
    assert "is not a" in err
    assert read(db) == (ALL, ["dead0", "dead1", "dead2"], 1)


def test_prune_without_a_rule_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite_db(tmp_path)
    assert main(["prune", str(db)]) == 1
    err = capsys.readouterr().err
    assert "say what to prune" in err
    assert err.count("\n") == 1
    assert read(db) == (ALL, ["dead0", "dead1", "dead2"], 1)


@pytest.mark.parametrize("name", ["missing.db", "a-folder"])
def test_a_missing_database_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    (tmp_path / "a-folder").mkdir()
    where = tmp_path / name
    assert main(["prune", str(where), "--marks-older-than", "1d"]) == 1
    assert "DatabaseNotFound" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder"]


def test_the_database_of_a_running_system_is_refused(
    held_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def marks() -> int:
        with contextlib.closing(sqlite3.connect(f"file:{held_db}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM processed").fetchone()[0])

    before = marks()
    assert before > 0
    assert main(["prune", str(held_db), "--marks-older-than", "0s", "--keep-dead-letters", "0"]) == 1
    err = capsys.readouterr().err
    assert "StoreLocked" in err
    assert "in use by another running system" in err
    assert marks() == before


def test_prune_a_postgresql_database(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def fill() -> None:
        async with PostgresStore(pg_dsn) as store:
            await populate(store, time.time())

    anyio.run(fill)
    assert main(["prune", pg_dsn, "--marks-older-than", "7d", "--keep-dead-letters", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["marks"], doc["dead_letters"], doc["journals"]) == (2, 1, 1)
    assert read(pg_dsn) == (["new", "queued", "dead1", "dead2"], ["dead1", "dead2"], 0)


def test_a_postgresql_database_in_use_is_pruned_alongside(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PostgreSQL database is shared (no owner lock): pruning is an unfenced write any
    member or tool may make while a system has it open."""

    async def go() -> int:
        async with PostgresStore(pg_dsn) as store:  # a running system's store, open meanwhile
            await populate(store, time.time())
            return await anyio.to_thread.run_sync(
                main, ["prune", pg_dsn, "--keep-dead-letters", "0", "--json"]
            )

    assert anyio.run(go) == 0
    assert json.loads(capsys.readouterr().out)["dead_letters"] == 3
    assert read(pg_dsn)[1] == []
