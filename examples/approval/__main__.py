"""``python -m examples.approval``: expense approvals over three virtual days.

Seven expenses against one team budget of 1,000:

- ``taxi`` approved after an hour; ``laptop`` denied; ``hotel`` left unanswered for
  48 hours, escalated, approved by the manager; ``dinner`` never answered: escalated,
  then refused after 72 hours; ``flight`` cancelled by its submitter while it waits;
  ``yacht`` more than the budget holds: refused at once; and a late ``approve`` of
  ``dinner`` after it closed: refused.
- Halfway (at hour 30) the system is shut down and started again on the same SQLite
  file: the parked workflows resume where they were.

The clock is an ``actors.testing.VirtualClock``: 72 hours pass in milliseconds. At the
end it checks that the budget is conserved (every hold was spent or released, once).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

import anyio

from actors import ActorsError, ActorSystem, InvocationHandle
from actors.testing import VirtualClock
from examples.approval.model import Budget, Expense
from persistence import SqliteStore

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
TEAM = "design"
BUDGET = 1_000
EXPENSES = [("taxi", 40), ("laptop", 400), ("hotel", 300), ("dinner", 120), ("flight", 100), ("yacht", 5_000)]


class Demo:
    """The running system, the clock, and what the demo saw."""

    def __init__(self, db: Path, clock: VirtualClock) -> None:
        self.db, self.clock = db, clock
        self.handles: dict[str, str] = {}
        self.outcomes: dict[str, str] = {}

    def system(self) -> ActorSystem:
        return ActorSystem(SqliteStore(self.db), [Expense, Budget], clock=self.clock)

    def say(self, text: str) -> None:
        hours = (self.clock.now() - START) / dt.timedelta(hours=1)
        print(f"  hour {hours:4.0f}  {text}")

    async def at(self, system: ActorSystem, hour: int) -> None:
        """Let the clock run to ``hour`` (deadlines fall due on the way)."""
        await self.clock.advance(START + dt.timedelta(hours=hour) - self.clock.now())
        await system.wait_idle()

    async def submit(self, system: ActorSystem, name: str, amount: int) -> None:
        handle = await system.ref(Expense, name).start(Expense.submit, TEAM, amount)
        self.handles[name] = handle.id
        await self.clock.advance(dt.timedelta(0))
        await system.wait_idle()
        self.say(f"{name}: submitted for {amount}")

    async def decide(self, system: ActorSystem, name: str, verdict: str, by: str) -> None:
        ref = system.ref(Expense, name)
        call = Expense.approve if verdict == "approve" else Expense.deny
        try:
            await ref.ask(call, by)
            self.say(f"{name}: {by} says {verdict}")
        except ActorsError as e:
            self.say(f"{name}: {by}'s {verdict} refused: {e}")
        await system.wait_idle()

    async def collect(self, system: ActorSystem) -> None:
        for name, hid in self.handles.items():
            handle: InvocationHandle[str] = system.handle(hid)
            try:
                self.outcomes[name] = await handle.result(timeout=10)
            except ActorsError as e:
                self.outcomes[name] = f"{type(e).__name__}: {e}"


async def main(db: Path) -> bool:
    clock = VirtualClock(START)
    demo = Demo(db, clock)
    print(f"Team {TEAM!r} starts with a budget of {BUDGET}. Decisions are due within 48 h, then")
    print("a manager has 24 h more. The clock is virtual; the store is SQLite.\n")
    async with demo.system() as system:
        for name, amount in EXPENSES:
            await demo.submit(system, name, amount)
        await demo.at(system, 1)
        await demo.decide(system, "taxi", "approve", "ann")
        await demo.at(system, 5)
        await demo.decide(system, "laptop", "deny", "ann")
        await demo.at(system, 10)
        await system.handle(demo.handles["flight"]).cancel("trip called off")
        await system.wait_idle()
        demo.say("flight: cancelled by its submitter (trip called off)")
        await demo.at(system, 30)
        view = await system.ref(Budget, TEAM).query(Budget.status)
        demo.say(f"budget: {view.left} left, {view.held} held, {view.spent} spent")
        demo.say("shutting the system down, with hotel and dinner parked")
    async with demo.system() as system:
        await clock.advance(dt.timedelta(0))
        await system.wait_idle()
        demo.say("started again on the same database")
        await demo.at(system, 49)
        for name in ("hotel", "dinner"):
            view_e = await system.ref(Expense, name).query(Expense.status)
            demo.say(f"{name}: escalated to {view_e.escalated_to}")
        await demo.decide(system, "hotel", "approve", "ann")  # too late for ann: escalated
        await demo.at(system, 60)
        await demo.decide(system, "hotel", "approve", "manager")
        await demo.at(system, 73)
        await demo.decide(system, "dinner", "approve", "manager")  # after its deadline
        await demo.collect(system)
        views = {name: await system.ref(Expense, name).query(Expense.status) for name, _ in EXPENSES}
        budget = await system.ref(Budget, TEAM).query(Budget.status)
    print("\nWhat happened to each expense:")
    for name, amount in EXPENSES:
        v = views[name]
        outcome = v.outcome or "never held (refused at submit)"
        print(f"  {name:<7} {amount:>6}  {outcome:<30} {demo.outcomes[name]}")
    approved = sum(a for n, a in EXPENSES if views[n].outcome == "approved")
    print(
        f"\nBudget: left {budget.left}, held {budget.held}, spent {budget.spent}, released {budget.released}"
    )
    conserved = budget.left + budget.held + budget.spent == BUDGET
    all_ended = budget.held == 0 and all(views[n].outcome is not None for n, _ in EXPENSES if views[n].team)
    print(f"budget conserved (left + held + spent = {BUDGET}): {'yes' if conserved else 'NO'}")
    print(f"every hold spent or released: {'yes' if all_ended else 'NO'}")
    held_ever = sum(a for n, a in EXPENSES if views[n].team)
    once = budget.spent + budget.released == held_ever
    print(f"spent equals the approved expenses ({approved}): {'yes' if budget.spent == approved else 'NO'}")
    print(f"each hold ended once (spent + released = {held_ever} held): {'yes' if once else 'NO'}")
    return conserved and all_ended and budget.spent == approved and once


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.approval", description=__doc__.split("\n")[0])
    p.add_argument("--db", type=Path, help="the SQLite file (default: a temporary one)")
    a = p.parse_args(argv)
    if a.db is not None:
        return 0 if anyio.run(main, a.db) else 1
    with tempfile.TemporaryDirectory() as tmp:
        return 0 if anyio.run(main, Path(tmp) / "approval.db") else 1


if __name__ == "__main__":
    sys.exit(cli())
