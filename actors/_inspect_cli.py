"""The read-only ``actors`` commands: entities, show, history, timers, invocations, queues.

Each opens the database with :class:`actors.inspect.Inspection` (read-only, no lock,
never creates a file), prints a table for people or, with ``--json``, one JSON
document (times in ISO 8601) for tools.
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table
from rich.text import Text

from actors._entity import Entity
from actors.errors import InvalidArguments
from actors.inspect import Inspection, to_json

COMMANDS = (
    "entities",
    "show",
    "history",
    "timers",
    "invocations",
    "inbox",
    "outbox",
    "dead-letters",
    "members",
)
"""The subcommands this module runs."""

_PROGRESS_FROM = 2000
"""Show a progress bar for replays and scans of at least this many items."""


def load_entity_class(path: str) -> type[Entity]:
    """Import the Entity class named ``module:Class``; InvalidArguments otherwise."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise InvalidArguments(f"name the entity class as module:Class, got {path!r}")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type) or not issubclass(obj, Entity):
        raise InvalidArguments(f"{path} is not an Entity class")
    return obj


def entity_classes(text: str | None) -> list[type[Entity]]:
    """The classes of a comma-separated list of module:Class (none for None)."""
    return [load_entity_class(p.strip()) for p in (text or "").split(",") if p.strip()]


def _where(items: Sequence[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        field, eq, raw = item.partition("=")
        if not eq or not field:
            raise InvalidArguments(f"--where takes field=value, got {item!r}")
        try:
            out[field] = json.loads(raw)
        except ValueError:
            out[field] = raw  # a bare word is a string
    return out


def add_parsers(sub: Any) -> None:
    """Add the read-only subcommands to the ``actors`` parser's subparsers."""

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help)
        p.add_argument("db", help="the database file or a postgresql:// DSN (read-only; never created)")
        p.add_argument("--json", action="store_true", help="print one JSON document")
        return p

    def classes(p: argparse.ArgumentParser) -> None:
        p.add_argument("--entities", metavar="MODULE:CLASS,...", help="entity classes to decode state")

    p = cmd("entities", "list entities with events, by type")
    p.add_argument("type", nargs="?")
    p.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE", help="filter on state")
    p.add_argument("--limit", type=int, default=1000)
    classes(p)
    p = cmd("show", "an entity's state now or as of a sequence")
    p.add_argument("type")
    p.add_argument("id")
    p.add_argument("--at", type=int, metavar="SEQ", help="state as of this event sequence")
    classes(p)
    p = cmd("history", "an entity's events")
    p.add_argument("type")
    p.add_argument("id")
    p.add_argument("--after", type=int, default=0, metavar="SEQ", help="only events after this sequence")
    p.add_argument("--limit", type=int, help="at most this many events")
    cmd("timers", "durable timers in due order")
    cmd("invocations", "unfinished invocations (in flight, parked) with their journal")
    for name in ("inbox", "outbox", "dead-letters"):
        cmd(name, f"list the {name}")
    cmd("members", "members of the cluster on this store")


async def run(a: argparse.Namespace) -> None:
    """Run one read-only subcommand and print its result."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 200  # piped: wide rows rather than the 80 columns of no terminal
    try:
        ins = Inspection(a.db, entities=entity_classes(getattr(a, "entities", None)))
    except ValueError as e:
        raise InvalidArguments(str(e)) from None
    async with ins:
        with _progress() as progress:
            value = await _read(ins, a, progress)
    if a.json:
        print(json.dumps(to_json(value), indent=2, ensure_ascii=False))
    else:
        _RENDER[a.cmd](console, to_json(value))


async def _read(ins: Inspection, a: argparse.Namespace, progress: Callable[[int, int], None]) -> object:
    c = a.cmd
    if c == "entities":
        return await ins.entities(a.type, where=_where(a.where), limit=a.limit, progress=progress)
    if c == "show":
        return await ins.state(a.type, a.id, at=a.at, progress=progress)
    if c == "history":
        return await ins.history(a.type, a.id, after=a.after, limit=a.limit)
    if c == "dead-letters":
        return await ins.dead_letters(limit=100_000)
    if c == "members":
        return await ins.members()
    return await getattr(ins, c)(limit=100_000)


@contextmanager
def _progress() -> Iterator[Callable[[int, int], None]]:
    """A callback drawing a transient progress bar on stderr once the work is long."""
    bar: list[Progress] = []
    task: list[Any] = []

    def update(done: int, total: int) -> None:
        if not bar:
            if total < _PROGRESS_FROM:
                return
            p = Progress(
                TextColumn("replaying"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            p.start()
            bar.append(p)
            task.append(p.add_task("replay", total=total))
        bar[0].update(task[0], completed=done, total=total)

    try:
        yield update
    finally:
        if bar:
            bar[0].stop()


# ---------------------------------------------------------------- rendering


def _cell(v: object) -> Text:
    if v is None:
        return Text("")
    return Text(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))


def _table(console: Console, rows: list[dict[str, Any]], cols: Sequence[str], empty: str) -> None:
    if not rows:
        console.print(Text(empty))
        return
    t = Table(*[Column(c.replace("_", " "), overflow="fold") for c in cols])
    for r in rows:
        t.add_row(*[_cell(r.get(c)) for c in cols])
    console.print(t)


_SIG = ("entity_type", "entity_id", "handler", "args", "signal_id", "accepted_at")


def _entities(console: Console, rows: Any) -> None:
    cols = ["entity_type", "entity_id", "last_seq", "updated_at"]
    if rows and rows[0].get("state") is not None:
        cols.append("state")
    _table(console, rows, cols, "no entities")


def _show(console: Console, s: Any) -> None:
    where = f"{s['entity_type']}/{s['entity_id']}"
    console.print(Text(f"{where} as of seq {s['seq']} (of {s['last_seq']})"))
    start = "the initial state" if s["snapshot_seq"] is None else f"the snapshot at seq {s['snapshot_seq']}"
    if s["decoded"]:
        console.print(Text(f"from {start} + {s['replayed']} events replayed"))
    else:
        console.print(Text(f"raw: {start} as stored; give --entities to apply the events after it"))
    if s["state"] is not None:
        _table(console, [{"field": k, "value": v} for k, v in s["state"].items()], ("field", "value"), "")
    if s["pending"]:
        console.print(Text("events after it, not applied:"))
        _history(console, s["pending"])


def _history(console: Console, rows: Any) -> None:
    _table(console, rows, ("seq", "type", "version", "recorded_at", "data"), "no events")


def _invocations(console: Console, rows: Any) -> None:
    if not rows:
        console.print(Text("no unfinished invocations"))
        return
    t = Table("entity type", "entity id", "invocation id", "handler", "status", "journal")
    for r in rows:
        steps = Table("step", "kind", "name", "result", "recorded at", box=None)
        for s in r["steps"]:
            steps.add_row(*[_cell(s[c]) for c in ("step", "kind", "name", "result", "recorded_at")])
        t.add_row(
            *[_cell(r[c]) for c in ("entity_type", "entity_id", "invocation_id", "handler", "status")], steps
        )
    console.print(t)


_MEMBER_COLS = ("name", "status", "shards", "owns", "heartbeat_at", "seen_ago", "role", "member_id")


def _members(console: Console, m: Any) -> None:
    if not m["clustered"]:
        console.print(
            Text(
                "no member has ever joined this store: it is not shared by a cluster "
                "(a system on an exclusive store owns every entity)"
            )
        )
        return
    rows = [
        {**r, "seen_ago": f"{r['seen_ago']:.1f}s", "role": "member" if r["serves"] else "client"}
        for r in m["members"]
    ]
    _table(console, rows, _MEMBER_COLS, "no members")
    alive = [r for r in m["members"] if r["status"] == "alive"]
    owned = sum(r["shards"] for r in m["members"])
    console.print(Text(f"{len(alive)} alive of {len(rows)}; {owned} shards owned"))


_RENDER: dict[str, Callable[[Console, Any], None]] = {
    "entities": _entities,
    "show": _show,
    "history": _history,
    "timers": lambda c, r: _table(
        c, r, ("entity_type", "entity_id", "key", "handler", "args", "due_at", "every"), "no timers"
    ),
    "invocations": _invocations,
    "inbox": lambda c, r: _table(c, r, ("position", *_SIG), "the inbox is empty"),
    "outbox": lambda c, r: _table(c, r, ("id", *_SIG), "the outbox is empty"),
    "dead-letters": lambda c, r: _table(
        c, r, ("id", *_SIG[:4], "attempts", "error", "failed_at"), "no dead letters"
    ),
    "members": _members,
}
