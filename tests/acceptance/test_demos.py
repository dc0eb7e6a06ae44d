"""The demos, run as a user runs them: ``python -m examples.bank`` / ``examples.cart`` from the repo root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run(*args: str, timeout: float = 90) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout


def number(label: str, text: str) -> int:
    found = re.search(rf"^\s*{re.escape(label)}\s*(\d+)", text, re.MULTILINE)
    assert found, f"no {label!r} line in:\n{text}"
    return int(found.group(1))


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_bank_demo_survives_a_kill_9_and_conserves_money(
    store: str, request: pytest.FixtureRequest
) -> None:
    where = [] if store == "sqlite" else ["--store", "postgres", "--dsn", request.getfixturevalue("pg_dsn")]
    out = run("-m", "examples.bank", *where)
    killed = re.search(r"SIGKILL after (\d+) acknowledged transfers: the worker exited with -9", out)
    assert killed, out
    finished = number("finished:", out)
    pending = number("accepted, waiting in the inbox:", out)
    unsent = number("not sent yet:", out)
    assert finished + pending + unsent == 300
    assert pending + finished >= int(killed.group(1)) >= 120  # nothing acknowledged was lost
    assert number("resumed after the crash:", out) == pending
    outcomes = [number(f"{s}:", out) for s in ("completed", "reversed", "failed")]
    assert sum(outcomes) == 300
    assert 1 <= outcomes[1] <= 7  # every 40th goes to an account never opened (unless its debit fails)
    total = re.search(r"^\s*total\s+([\d,.]+)\s+([\d,.]+)", out, re.MULTILINE)
    assert total is not None, out
    assert total.group(1) == total.group(2) == "8,000.00", out
    assert "money conserved: yes" in out
    assert "no transfer applied twice: yes" in out


def test_the_bank_demo_reuses_a_database_without_applying_anything_twice(tmp_path: Path) -> None:
    db = str(tmp_path / "bank.db")
    first = run("-m", "examples.bank", "--db", db, "--transfers", "60", "--kill-after", "20")
    second = run("-m", "examples.bank", "--db", db, "--transfers", "60", "--kill-after", "20")
    assert "this database ran 60 of these transfers before" in second
    assert number("finished:", second) == 60
    for out in (first, second):
        assert "money conserved: yes" in out
        assert "no transfer applied twice: yes" in out
    balances = [
        re.findall(r"^\s*(acc-\d\d)\s+[\d,.-]+\s+([\d,.-]+)", out, re.MULTILINE) for out in (first, second)
    ]
    assert balances[0] == balances[1]


def test_the_cart_demo_tells_its_three_stories() -> None:
    out = run("-m", "examples.cart")
    expected = [
        "alice adds 5 x poster: refused (OutOfStock: only 2 x Poster (poster) available, asked for 5)",
        "09:00:00  gateway: attempt 1, 62.30: 503 unavailable",
        "09:00:01  gateway: attempt 2, 62.30: 503 unavailable",
        "09:00:03  gateway: attempt 3, 62.30: charged as ch_0001",
        "order placed: 62.30 paid, payment ch_0001",
        "gateway: attempt 1, 24.00: declined",
        "checkout refused (PaymentFailed: payment failed, nothing charged: "
        "card 4000 0000 0000 0002 was declined)",
        "rolled back: poster available 0 -> 2, nothing charged; bob's cart is open with 2 x poster",
        "09:49:00  carol's cart is open, 29 minutes after its last change; mug available 3",
        "09:51:00  carol's cart is expired (its timer fired at 09:50:00)",
        "mug available 3 -> 7, lamp available 2 -> 3",
        "cart alice: ordered (ch_0001)",
        "gateway: 4 calls, 1 charge, 62.30 in all",
    ]
    for line in expected:
        assert line in out, f"{line!r} not in:\n{out}"
    table = re.findall(r"^\s*(lamp|mug|poster)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.MULTILINE)
    assert table == [
        ("lamp", "3", "0", "3", "2"),
        ("mug", "7", "0", "7", "3"),
        ("poster", "2", "0", "2", "0"),
    ]


def test_the_demos_explain_their_options() -> None:
    assert "--kill-after" in run("-m", "examples.bank", "--help")
    assert "virtual clock" in run("-m", "examples.cart", "--help")
