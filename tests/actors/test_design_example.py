"""DESIGN.md section 1, verbatim: the example a user reads first runs and prints 70.

The code between the markers is copied unchanged from DESIGN.md (a test below
compares the two when DESIGN.md is at hand); only the test functions are ours.
"""

# The example stays verbatim: it binds ``left`` without reading it (F841) and its
# imports are not grouped the isort way (I001).
# ruff: noqa: F841, I001
import re
from pathlib import Path

import pytest

# fmt: off
# --- begin DESIGN.md example ---
import attrs
from actors import ActorSystem, Entity, Rejected, applies, query, signal
from persistence import SqliteStore

@attrs.frozen
class Deposited:
    amount: int

@attrs.frozen
class Withdrawn:
    amount: int

@attrs.define
class Account(Entity):
    """A bank account. Its attrs fields are its state."""
    balance: int = 0

    @signal
    def deposit(self, amount: int) -> int:
        if amount <= 0:
            raise Rejected("amount must be positive")
        self.emit(Deposited(amount))       # applied at once, persisted at commit
        return self.balance

    @signal
    def withdraw(self, amount: int) -> int:
        if amount > self.balance:
            raise Rejected("insufficient funds")
        self.emit(Withdrawn(amount))
        return self.balance

    @applies
    def _deposited(self, event: Deposited) -> None:   # event type from the annotation
        self.balance += event.amount

    @applies
    def _withdrawn(self, event: Withdrawn) -> None:
        self.balance -= event.amount

    @query
    def get_balance(self) -> int:
        return self.balance


async def main() -> None:
    async with ActorSystem(SqliteStore("bank.db"), entities=[Account]) as system:
        alice = system.ref(Account, "alice")
        await alice.tell(Account.deposit, 100)          # returns once durably accepted
        left = await alice.ask(Account.withdraw, 30)    # returns the handler's result after commit
        print(await alice.query(Account.get_balance))   # 70
# --- end DESIGN.md example ---
# fmt: on


DESIGN_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "DESIGN.md",
    Path(__file__).resolve().parents[2] / "docs" / "DESIGN.md",
    Path("/work/shared/DESIGN.md"),
)


@pytest.mark.anyio
async def test_example_prints_70(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # the example opens "bank.db" in the working directory
    await main()
    assert capsys.readouterr().out == "70\n"
    assert (tmp_path / "bank.db").is_file()


@pytest.mark.anyio
async def test_example_state_survives_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    await main()
    await main()  # a second run on the same file: 70 + 100 - 30
    assert capsys.readouterr().out == "70\n140\n"


def test_example_is_verbatim_copy_of_design_md() -> None:
    design = next((p for p in DESIGN_CANDIDATES if p.is_file()), None)
    if design is None:
        pytest.skip("DESIGN.md is not at hand")
    found = re.search(r"## 1\. What a user writes\n\n```python\n(.*?)```", design.read_text(), re.S)
    assert found is not None, f"no section-1 code block in {design}"
    mine = Path(__file__).read_text()
    start = mine.index("# --- begin DESIGN.md example ---\n") + len("# --- begin DESIGN.md example ---\n")
    end = mine.index("# --- end DESIGN.md example ---")
    assert mine[start:end] == found.group(1)
