"""The approval demo, run as a user runs it (``python -m examples.approval``), and its claims."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest

from actors import ActorSystem, Cancelled
from actors.testing import VirtualClock
from examples.approval.model import Budget, Expense
from persistence import MemoryStore

ROOT = Path(__file__).resolve().parents[2]


def _demo() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "examples.approval"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout


def test_the_demo_ends_each_expense_as_it_says_and_conserves_the_budget() -> None:
    out = _demo()
    rows = dict(
        re.findall(r"^  (\w+)\s+\d+  (.+?)\s*$", out.split("What happened to each expense:")[1], re.M)
    )
    assert rows["taxi"].startswith("approved")
    assert rows["taxi"].endswith("approved by ann")
    assert rows["laptop"].startswith("denied")
    assert rows["laptop"].endswith("Rejected: denied by ann")
    assert rows["hotel"].startswith("approved")
    assert rows["hotel"].endswith("approved by manager")
    assert rows["dinner"].startswith("timed out")
    assert "no decision within 72 hours" in rows["dinner"]
    assert rows["flight"].startswith("cancelled")
    assert "Cancelled" in rows["flight"]
    assert "trip called off" in rows["flight"]
    assert rows["yacht"].startswith("never held")
    assert "budget has 40 left, 5000 asked" in rows["yacht"]
    # the parked workflows survived the restart in the middle and escalated after it
    assert "shutting the system down, with hotel and dinner parked" in out
    assert re.search(r"hour\s+49\s+hotel: escalated to manager", out)
    assert re.search(r"hour\s+49\s+dinner: escalated to manager", out)
    assert "ann cannot decide it" in out  # escalated: only the manager decides
    assert "dinner: manager's approve refused" in out  # after its deadline
    budget = re.search(r"Budget: left (\d+), held (\d+), spent (\d+), released (\d+)", out)
    assert budget is not None, out
    left, held, spent, released = map(int, budget.groups())
    assert (left, held, spent, released) == (660, 0, 40 + 300, 400 + 120 + 100)
    assert left + held + spent == 1_000
    for claim in (
        "budget conserved (left + held + spent = 1000): yes",
        "every hold spent or released: yes",
        "spent equals the approved expenses (340): yes",
        "each hold ended once (spent + released = 960 held): yes",
    ):
        assert claim in out


@pytest.mark.anyio
@pytest.mark.parametrize("when", [None, dt.timedelta(hours=1), dt.timedelta(hours=50)])
async def test_a_cancel_at_any_await_closes_the_expense_and_gives_the_hold_back(
    when: dt.timedelta | None,
) -> None:
    # None: cancelled at once (it may reach the hold's ask); 1 h: parked; 50 h: escalated
    clock = VirtualClock()
    async with ActorSystem(MemoryStore(), [Expense, Budget], clock=clock) as system:
        handle = await system.ref(Expense, "e").start(Expense.submit, "team", 300)
        if when is not None:
            await clock.advance(when)
            await system.wait_idle()
        await handle.cancel("changed my mind")
        with pytest.raises(Cancelled):
            await handle.result(timeout=10)
        view = await system.ref(Expense, "e").query(Expense.status)
        budget = await system.ref(Budget, "team").query(Budget.status)
    assert view.outcome == "cancelled"
    assert (view.escalated_to is not None) == (when == dt.timedelta(hours=50))
    assert (budget.left, budget.held, budget.spent) == (1_000, 0, 0)
    assert budget.released in (0, 300)  # 0 only when it never held
    if when is not None:
        assert budget.released == 300
