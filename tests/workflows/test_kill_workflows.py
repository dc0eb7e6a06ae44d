"""kill -9 during a wait, during a durable sleep and while a parent awaits its children:
nothing acknowledged is lost, nothing applied twice, no activity called again, and the
re-run takes its first pre-wait branch although another signal changed the field it
read while the workflow was parked."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from actors import ActorSystem
from tests._stores import store_at
from tests.workflows._kill_flow import Flow, Kid, Parent

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_kill_flow.py")


async def _run_until_line(args: list[str], log: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as stderr, anyio.fail_after(20):
        process = await anyio.open_process(
            [sys.executable, str(WORKER), *args], cwd=ROOT, env=env, stderr=stderr
        )
        async with process:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            try:
                line = (await lines.receive_until(b"\n", 4096)).decode()
            except (anyio.EndOfStream, anyio.IncompleteRead):
                pytest.fail(f"the worker stopped early:\n{await anyio.Path(log).read_text()}")
            os.kill(process.pid, signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
    return line


async def test_sigkill_while_waiting_and_while_sleeping(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    counter = tmp_path / "counter"
    hid = await _run_until_line(["wait", db, str(counter)], tmp_path / "w1.log")
    await _run_until_line(["sleep", db], tmp_path / "w2.log")
    async with ActorSystem(store_at(db), [Flow]) as system:
        assert await system.handle(hid).result(timeout=15) == "small:ann"
        amount, decision, log = await system.ref(Flow, "f").query(Flow.state)
    assert (amount, decision) == (500, "ann")
    assert log == ("pre-wait small", "post-wait small", "woke")
    assert counter.read_text() == "called\n"  # the activity ran once across two kills


async def test_sigkill_while_a_parent_awaits_its_children(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    counter = tmp_path / "counter"
    hid = await _run_until_line(["children", db, str(counter)], tmp_path / "c1.log")
    await _run_until_line(["children2", db], tmp_path / "c2.log")
    async with ActorSystem(store_at(db), [Flow, Kid, Parent]) as system:
        for k in ("k1", "k2"):
            await system.ref(Kid, k).tell(Kid.release)
        assert await system.handle(hid).result(timeout=15) == 1 + 4 + 9
        assert await system.ref(Parent, "p").query(Parent.state) == ("started", "total 14")
    assert counter.read_text() == "called\n" * 3  # each kid's activity ran once across two kills
