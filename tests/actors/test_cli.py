"""The actors command: inspect a store, requeue dead letters, call handlers by name."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import attrs
import pytest

from actors import ActorSystem, Entity, HandlerFailed, SupervisorPolicy, signal
from actors.cli import main
from persistence import SqliteStore


def test_tell_ask_query_and_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "c.db")
    assert main(["tell", db, "tests.models:Account", "a", "deposit", '{"amount": 5}']) == 0
    assert main(["ask", db, "tests.models:Account", "a", "deposit", '{"amount": 2}']) == 0
    assert main(["query", db, "tests.models:Account", "a", "get_balance"]) == 0
    out = capsys.readouterr().out.split()
    assert out == ["accepted", "7", "7"]
    assert main(["events", db, "Account", "a"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["data"]["amount"] for x in lines] == [5, 2]
    assert [x["seq"] for x in lines] == [1, 2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ask", "DB", "tests.models:Nope", "a", "deposit"], "not an Entity class"),
        (["ask", "DB", "tests.models", "a", "deposit"], "module:Class"),
        (["ask", "DB", "tests.models:Account", "a", "nope"], "UnknownHandler"),
        (["ask", "DB", "tests.models:Account", "a", "deposit", "[1]"], "JSON object"),
        (["ask", "DB", "tests.models:Account", "a", "deposit", '{"amount": "x"}'], "InvalidArguments"),
        (["retry", "DB", "41"], "no dead letter"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [str(tmp_path / "c.db") if a == "DB" else a for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


@attrs.define
class Fragile(Entity):
    """Crashes on demand."""

    n: int = 0

    @signal
    def boom(self, why: str) -> None:
        raise RuntimeError(why)


def test_dead_letters_listed_and_requeued(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "d.db"

    async def crash_once() -> None:
        policy = SupervisorPolicy(max_attempts=1)
        async with ActorSystem(SqliteStore(db), [Fragile], supervision=policy) as system:
            with pytest.raises(HandlerFailed, match="dead-lettered"):
                await system.ref(Fragile, "p").ask(Fragile.boom, "kaput")

    anyio.run(crash_once)
    assert main(["dead-letters", str(db), "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["entity_id"], listed["handler"], listed["attempts"]) == ("p", "boom", 1)
    assert listed["error"] == "RuntimeError('kaput')"
    assert main(["retry", str(db), str(listed["id"])]) == 0
    capsys.readouterr()
    assert main(["inbox", str(db), "--json"]) == 0
    assert [(x["entity_id"], x["handler"]) for x in json.loads(capsys.readouterr().out)] == [("p", "boom")]
    assert main(["dead-letters", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
