"""``actors replay DB module:Class ...``: the deploy gate, run as a command in a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors import ActorSystem
from actors.inspect import _invocation
from actors.testing import VirtualClock
from persistence import SqliteStore
from persistence.store import JournalEntry
from tests.workflows.replay_model import Request

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tests.workflows.replay_model"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", "replay", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database written by ``Request``: one finished invocation, two parked (one big)."""
    import anyio

    db = tmp_path_factory.mktemp("replay") / "app.db"

    async def write() -> None:
        clock = VirtualClock()
        async with ActorSystem(SqliteStore(db), [Request], clock=clock) as system:
            done = await system.ref(Request, "done").start(Request.ask_for, 5)
            await clock.advance(dt.timedelta(0))
            await system.ref(Request, "done").ask(Request.decide, "yes")
            assert await done.result(timeout=10) == "yes"
            await system.ref(Request, "small").start(Request.ask_for, 7)
            await system.ref(Request, "big").start(Request.ask_for, 700)
            await clock.advance(dt.timedelta(hours=1))
            await system.wait_idle()

    anyio.run(write, backend="asyncio")
    return db


def test_the_version_that_wrote_it_and_a_compatible_one_pass(written: Path) -> None:
    for cls in ("Request", "RequestCompatible"):
        done = _run(str(written), f"{MODEL}:{cls}", "--json")
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc == {"entities": 3, "invocations": 2, "problems": []}
    table = _run(str(written), f"{MODEL}:RequestCompatible")
    assert table.returncode == 0, table.stderr
    assert "checked 3 entities and 2 parked invocations: no problems" in table.stdout


def test_an_incompatible_version_names_each_problem_and_exits_1(written: Path) -> None:
    done = _run(str(written), f"{MODEL}:RequestIncompatible", "--json")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["invocations"] == 2
    [problem] = doc["problems"]  # only the big one takes the new branch before its wait
    assert (problem["entity_type"], problem["entity_id"]) == ("Request", "big")
    assert problem["invocation"].startswith("s:")
    assert problem["step"]
    assert "emits replay_model.flagged where the log holds replay_model.asked" in problem["what"]
    table = _run(str(written), f"{MODEL}:RequestIncompatible")
    assert table.returncode == 1
    assert "Request/big" in table.stdout
    assert "replay_model.flagged" in table.stdout
    assert "checked 3 entities and 2 parked invocations: 1 problem" in table.stdout


def test_nothing_is_written_by_the_check(written: Path) -> None:
    before = {p.name: p.read_bytes() for p in written.parent.iterdir() if p.name == "app.db"}
    assert _run(str(written), f"{MODEL}:RequestIncompatible").returncode == 1
    after = {p.name: p.read_bytes() for p in written.parent.iterdir() if p.name == "app.db"}
    assert before == after


def test_a_missing_file_is_one_line_exit_1_and_creates_nothing(tmp_path: Path) -> None:
    done = _run(str(tmp_path / "typo.db"), f"{MODEL}:Request")
    assert done.returncode == 1
    assert done.stderr.startswith("actors: DatabaseNotFound: no database at")
    assert done.stderr.count("\n") == 1
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        ("tests.workflows.replay_model", "name the entity class as module:Class"),
        (f"{MODEL}:DAY", "is not an Entity class"),
        ("no_such_module_x:Thing", "ModuleNotFoundError"),
    ],
)
def test_a_bad_class_is_one_clear_line(written: Path, cls: str, message: str) -> None:
    done = _run(str(written), cls)
    assert done.returncode == 1
    assert message in done.stderr
    assert done.stderr.count("\n") == 1


def test_no_class_is_a_usage_error(written: Path) -> None:
    done = _run(str(written))
    assert done.returncode == 2
    assert "MODULE:CLASS" in done.stderr


def test_invocations_marks_real_parked_workflows_as_parked(written: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actors.cli", "invocations", str(written), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    rows = doc if isinstance(doc, list) else doc["invocations"]
    by_entity = {r["entity_id"]: r for r in rows}
    assert set(by_entity) == {"small", "big"}  # the finished one is no longer unfinished
    for r in by_entity.values():
        assert r["status"] == "parked"
        assert r["handler"] == "ask_for"
        assert r["steps"][-1]["kind"] == "wait"


def _entry(step: int, kind: str, result: object) -> JournalEntry:
    return JournalEntry("T", "i", "s:x", step, kind, "wait_until", json.dumps(result), 0.0)


@pytest.mark.parametrize(
    ("journal", "status"),
    [
        ([], "in_flight"),
        ([_entry(0, "activity", {"ok": 1})], "in_flight"),
        ([_entry(0, "wait", {"park": {"to": 1}})], "parked"),
        # resumed, its segment not yet at its next checkpoint: running, not parked
        ([_entry(0, "wait", {"park": {"to": 1}, "resume": {"seq": 2, "value": True}})], "in_flight"),
        # resumed once, parked again at a later wait
        (
            [
                _entry(0, "wait", {"park": {"to": 1}, "resume": {"seq": 2, "value": True}}),
                _entry(1, "activity", {"ok": 1}),
                _entry(2, "wait", {"park": {"to": 3}}),
            ],
            "parked",
        ),
        # a cancel request (a negative step) after a park does not hide the park
        ([_entry(0, "wait", {"park": {"to": 1}}), _entry(-1, "cancel", {"reason": "r"})], "parked"),
        # a step journaled after a resumed wait: running
        (
            [_entry(0, "wait", {"park": {"to": 1}, "resume": {"seq": 1, "value": 1}}), _entry(1, "ask", {})],
            "in_flight",
        ),
    ],
)
def test_parked_is_the_newest_wait_with_a_park_and_no_resume(
    journal: list[JournalEntry], status: str
) -> None:
    item = _invocation(("T", "i", "s:x"), journal, None)
    assert item.status == status
