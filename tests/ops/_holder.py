"""Child process: runs the ops scenario on DB and holds the store open until stdin closes.

``python -m tests.ops._holder DB`` prints ``ready`` once ``populate`` is done, then
waits; when its stdin closes it opens the gate and closes the system cleanly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from tests.ops.model import Gate, populate, system


async def main(path: Path) -> None:
    gate = Gate()
    async with system(path, gate) as s:
        await populate(s, path)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)
        gate.opened.set()
        await s.wait_idle()


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]))
