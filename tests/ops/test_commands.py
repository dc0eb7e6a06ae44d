"""The read-only actors commands on a store held open by a running system."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.cli import main
from tests.ops.conftest import ROOT
from tests.ops.model import DEAD, EXPECTED, LONG, TIMER, WORKER, Ledger, running

CLASSES = "tests.ops.model:Ledger"

SIGNAL_KEYS = {"entity_type", "entity_id", "signal_id", "handler", "args", "accepted_at"}
SHAPES: dict[str, tuple[list[str], set[str] | None]] = {
    # command line after DB -> keys of each listed record (None: one object, checked below)
    "entities": (["entities"], {"entity_type", "entity_id", "last_seq", "updated_at", "state"}),
    "history": (["history", "Ledger", "long"], {"seq", "type", "version", "data", "recorded_at"}),
    "timers": (["timers"], {"entity_type", "entity_id", "key", "handler", "args", "due_at", "every"}),
    "invocations": (
        ["invocations"],
        {"entity_type", "entity_id", "invocation_id", "handler", "args", "accepted_at", "status", "steps"},
    ),
    "inbox": (["inbox"], {"position"} | SIGNAL_KEYS),
    "outbox": (["outbox"], {"id"} | SIGNAL_KEYS),
    "dead-letters": (
        ["dead-letters"],
        {"id", "error", "traceback", "attempts", "failed_at"} | SIGNAL_KEYS,
    ),
    "show": (["show", "Ledger", "long", "--at", "4", "--entities", CLASSES], None),
    "members": (["members"], None),
}


def run_json(capsys: pytest.CaptureFixture[str], db: Path, args: list[str]) -> Any:
    assert main([args[0], str(db), *args[1:], "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def check_json(name: str, value: Any) -> None:
    """Each command's --json document has its shape and the scenario's values."""
    keys = SHAPES[name][1]
    if keys is not None:
        assert isinstance(value, list), name
        assert value, name
        assert all(set(item) == keys for item in value), (name, value[0])
        times = [v for item in value for k, v in item.items() if k.endswith("_at")]
        assert times, name
        assert all(isinstance(t, str) and t.endswith("+00:00") for t in times if t), times
    if name == "entities":
        assert {e["entity_id"] for e in value} == set(EXPECTED)  # the worker has no event yet
    elif name == "history":
        assert [e["data"]["text"] for e in value] == LONG
    elif name == "timers":
        assert [(t["entity_id"], t["key"]) for t in value] == [TIMER]
    elif name == "invocations":
        [inv] = value
        assert (inv["entity_id"], inv["handler"], inv["status"]) == (WORKER[0], "work", "in_flight")
        assert [s["kind"] for s in inv["steps"]] == ["activity"]
    elif name == "inbox":
        assert [(i["entity_id"], i["handler"]) for i in value] == [(WORKER[0], "work"), (WORKER[0], "note")]
    elif name == "outbox":
        raise AssertionError("the outbox of a running system is delivered: not listed here")
    elif name == "dead-letters":
        assert [(d["entity_id"], d["handler"], d["args"]) for d in value] == [
            (DEAD[0], DEAD[1], {"why": DEAD[2]})
        ]
    elif name == "show":
        assert value["state"] == {"entries": LONG[:4], "count": 4, "owner": ""}
        assert (value["seq"], value["last_seq"], value["decoded"], value["snapshot_seq"]) == (
            4,
            10,
            True,
            None,
        )
    elif name == "members":
        assert value == {"clustered": False, "members": []}


@pytest.mark.parametrize("name", [n for n in SHAPES if n != "outbox"])
def test_json_of_each_command_beside_another_process(
    held_db: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    check_json(name, run_json(capsys, held_db, SHAPES[name][0]))


def test_outbox_lists_undelivered_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from persistence import SqliteStore
    from persistence.store import Commit, SignalRecord

    db = tmp_path / "o.db"
    sig = SignalRecord("Ledger", "a", "s1", "note", '{"text":"hi"}', "f", 1.0)
    out = SignalRecord("Ledger", "b", "o1", "note", '{"text":"to b"}', "g", 2.0)

    async def write() -> None:
        async with SqliteStore(db) as store:  # a system that died before delivering
            await store.write([Commit("Ledger", "a", sig, "{}", 1, outbox=(out,), from_inbox=False)])

    anyio.run(write)
    [item] = run_json(capsys, db, ["outbox"])
    assert set(item) == SHAPES["outbox"][1]
    assert (item["entity_id"], item["handler"], item["args"]) == ("b", "note", {"text": "to b"})
    assert item["accepted_at"] == "1970-01-01T00:00:02+00:00"


def test_where_filter_and_state_at_seq(held_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bobs = run_json(capsys, held_db, ["entities", "Ledger", "--where", "owner=bob", "--entities", CLASSES])
    assert sorted(e["entity_id"] for e in bobs) == sorted(
        k for k, v in EXPECTED.items() if v.get("owner") == "bob"
    )
    assert all(e["state"]["owner"] == "bob" for e in bobs)
    both = ["--where", "owner=bob", "--where", "count=1"]
    assert [
        e["entity_id"]
        for e in run_json(capsys, held_db, ["entities", "Ledger", *both, "--entities", CLASSES])
    ] == ["owned-1"]
    for at in (0, 5, 7, 10):
        st = run_json(capsys, held_db, ["show", "Ledger", "long", "--at", str(at), "--entities", CLASSES])
        assert st["state"]["entries"] == LONG[:at]
    page = run_json(capsys, held_db, ["history", "Ledger", "long", "--after", "3", "--limit", "2"])
    assert [e["data"]["text"] for e in page] == LONG[3:5]
    raw = run_json(capsys, held_db, ["show", "Ledger", "long", "--at", "7"])
    assert (raw["decoded"], raw["snapshot_seq"], [e["seq"] for e in raw["pending"]]) == (False, 6, [7])


def test_tables_for_people(held_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(held_db), "Ledger", "long", "--at", "7", "--entities", CLASSES]) == 0
    out = capsys.readouterr().out
    assert "Ledger/long as of seq 7 (of 10)" in out
    assert "from the snapshot at seq 6 + 1 events replayed" in out
    assert "entry-7" in out
    assert "entry-8" not in out
    assert main(["dead-letters", str(held_db)]) == 0
    out = capsys.readouterr().out
    assert DEAD[0] in out
    assert "RuntimeError" in out
    assert "┃" in out
    assert main(["members", str(held_db)]) == 0
    assert "no member has ever joined this store" in capsys.readouterr().out
    assert main(["invocations", str(held_db)]) == 0
    out = capsys.readouterr().out
    assert "in_flight" in out
    assert f"stamped {WORKER[1]}" in out


def test_table_cells_are_not_markup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "m.db"

    async def write() -> None:
        async with running(db) as s:
            await s.ref(Ledger, "[bold]x[/bold]").ask(Ledger.note, "[red]not red[/red]")

    anyio.run(write)
    assert main(["history", str(db), "Ledger", "[bold]x[/bold]"]) == 0
    assert "[red]not red[/red]" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_missing_file_is_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    db = tmp_path / "typo.db"
    argv = SHAPES[name][0]
    assert main([argv[0], str(db), *argv[1:]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("actors: DatabaseNotFound: no database at")
    assert err.count("\n") == 1
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "DB", "Ledger", "long", "--at", "99"], "has 10 events"),
        (["show", "DB", "Ledger", "nobody"], "UnknownEntity: no entity Ledger/nobody"),
        (["history", "DB", "Ledgr", "long"], "no entity type 'Ledgr'"),
        (["history", "DB", "Ledger", "long", "--limit", "0"], "limit must be an int >= 1"),
        (["entities", "DB", "Ledger", "--where", "owner"], "field=value"),
        (["entities", "DB", "Ledger", "--where", "owner=bob"], "needs its class"),
        (["entities", "DB", "Ledger", "--where", "hue=1", "--entities", CLASSES], "no field hue"),
        (["show", "DB", "Ledger", "long", "--entities", "tests.ops.model:Gate"], "not an Entity class"),
    ],
)
def test_bad_input_is_one_clear_line(
    held_db: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([str(held_db) if a == "DB" else a for a in argv]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.anyio
async def test_commands_beside_a_system_in_this_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "live.db"
    async with running(db):
        for name in [n for n in SHAPES if n != "outbox"]:
            argv = [SHAPES[name][0][0], str(db), *SHAPES[name][0][1:], "--json"]
            assert await anyio.to_thread.run_sync(main, argv) == 0
            check_json(name, json.loads(capsys.readouterr().out))


def test_the_installed_command_runs(held_db: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "actors.cli",
            "show",
            str(held_db),
            "Ledger",
            "long",
            "--json",
            "--entities",
            CLASSES,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"]["entries"] == LONG
