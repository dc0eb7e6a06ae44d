"""Fixtures of the ops tests: a store held open by a running system in another process."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def held_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A database populated and held open (lock and WAL) by a system in a child process."""
    path = tmp_path_factory.mktemp("held") / "ops.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.ops._holder", str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    watchdog = threading.Timer(60, child.kill)  # a hung child ends the readline with EOF
    watchdog.start()
    try:
        line = child.stdout.readline()  # the child prints "ready" or dies (then: EOF)
        watchdog.cancel()
        if line.strip() != "ready":
            child.kill()
            raise AssertionError(f"holder did not start: {line!r} {child.communicate()[1][-3000:]}")
        yield path
    finally:
        watchdog.cancel()
        child.stdin.close()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        err = child.stderr.read() if child.stderr else ""
        for f in (child.stdout, child.stderr):
            if f is not None:
                f.close()
    assert child.returncode == 0, err[-3000:]
