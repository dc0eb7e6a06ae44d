"""Who waits on whom: the graph of journaled asks in flight, to refuse one that would
close a cycle (every entity in it would wait forever). Internal."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from actors.errors import DeadlockError

Key = tuple[str, str]


class WaitGraph:
    """Edges ``source -> target``: a handler of ``source`` waits on an ask to ``target``."""

    __slots__ = ("_waits",)

    def __init__(self) -> None:
        self._waits: dict[Key, dict[Key, int]] = {}

    def check_cycle(self, source: Key, target: Key) -> None:
        """Raise DeadlockError if ``target`` already waits (transitively) on ``source``."""
        path = self._path(target, source, set())
        if path is not None:
            cycle = (source, *path)
            names = " -> ".join(f"{t}/{i}" for t, i in cycle)
            raise DeadlockError(f"ask cycle: {names}; every entity in it would wait forever", cycle=cycle)

    def _path(self, at: Key, goal: Key, seen: set[Key]) -> list[Key] | None:
        if at == goal:
            return [at]
        if at in seen:
            return None
        seen.add(at)
        for nxt in self._waits.get(at, {}):
            rest = self._path(nxt, goal, seen)
            if rest is not None:
                return [at, *rest]
        return None

    @contextlib.contextmanager
    def waiting(self, source: Key, target: Key) -> Iterator[None]:
        """Record that ``source``'s handler waits on ``target`` inside the block."""
        edges = self._waits.setdefault(source, {})
        edges[target] = edges.get(target, 0) + 1
        try:
            yield
        finally:
            edges[target] -= 1
            if not edges[target]:
                del edges[target]
            if not edges:
                del self._waits[source]
