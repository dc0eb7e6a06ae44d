"""``tell``/``ask``/``query`` are typed with ParamSpec: mypy checks arguments and results.

A small module of right and wrong uses is type-checked with ``mypy --strict``; each
line marked ``# wrong`` must be reported (by its line number) and no other line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

USES = """\
from __future__ import annotations

import attrs

from actors import ActorSystem, Entity, signal
from tests.models import Account


@attrs.define
class Slow(Entity):
    n: int = 0

    @signal
    async def bump(self, by: int) -> int:
        return self.n + by


async def uses(system: ActorSystem) -> None:
    ref = system.ref(Account, "a")
    left: int = await ref.ask(Account.deposit, 1)
    await ref.tell(Account.deposit, 1)
    await ref.ask(Account.deposit, amount=1)
    balance: int = await ref.query(Account.get_balance)
    dynamic: object = await ref.ask("deposit", 1)
    await ref.options(key="k").tell(Account.withdraw, 5)
    await ref.ask(Account.deposit, "x")  # wrong
    await ref.ask(Account.deposit)  # wrong
    await ref.ask(Account.deposit, 1, 2)  # wrong
    await ref.ask(Account.deposit, amt=1)  # wrong
    await ref.tell(Account.deposit, "x")  # wrong
    await ref.tell(Account.withdraw)  # wrong
    await ref.query(Account.get_balance, 1)  # wrong
    text: str = await ref.ask(Account.deposit, 1)  # wrong
    other: str = await ref.query(Account.get_balance)  # wrong
    print(left, balance, dynamic, text, other)


async def async_handler(system: ActorSystem) -> None:
    ref = system.ref(Slow, "s")
    got: int = await ref.ask(Slow.bump, 1)
    await ref.tell(Slow.bump, by=2)
    await ref.ask(Slow.bump, "x")  # wrong
    bad: str = await ref.ask(Slow.bump, 1)  # wrong
    await system.ref(Account, "a").ask(Slow.bump, 1)  # wrong
    await ref.ask(Account.deposit, 1)  # wrong
    print(got, bad)
"""


def marked_lines(text: str) -> tuple[set[int], set[int]]:
    """Line numbers of the wrong uses and of the right ones (the other calls on ``ref``)."""
    wrong, right = set(), set()
    for number, line in enumerate(text.splitlines(), start=1):
        if "# wrong" in line:
            wrong.add(number)
        elif "await ref" in line:
            right.add(number)
    return wrong, right


def test_mypy_reports_exactly_the_wrong_uses(tmp_path: Path) -> None:
    module = tmp_path / "uses.py"
    module.write_text(USES)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            str(module),
        ],
        cwd=ROOT,
        env={**os.environ, "MYPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    pattern = re.compile(rf"^{re.escape(str(module))}:(\d+): error: (.*)$", re.M)
    reported = {int(m.group(1)) for m in pattern.finditer(result.stdout)}
    wrong, right = marked_lines(USES)
    assert wrong, "the module must contain wrong uses"
    assert right, "the module must contain right uses"
    details = f"mypy said:\n{result.stdout}{result.stderr}"
    assert wrong <= reported, f"not reported: {sorted(wrong - reported)}\n{details}"
    assert not reported & right, f"right uses reported: {sorted(reported & right)}\n{details}"
    assert reported <= wrong, f"unexpected errors: {sorted(reported - wrong)}\n{details}"
