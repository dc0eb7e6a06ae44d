"""The ``actors`` command: look into a store and send signals by name.

    actors events DB TYPE ID          the event log of one entity, as JSON lines
    actors inbox DB                   pending signals
    actors dead-letters DB            dead letters, with their errors
    actors retry DB DEAD_LETTER_ID    move a dead letter back to the inbox
    actors ask|tell|query DB MODULE:CLASS ID HANDLER [JSON_ARGS]

The database must not be in use by a running system (the store is single-owner).
``ask``/``tell``/``query`` import the entity class you name on the command line
(never a name read from the database) and take the arguments as a JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from actors.entity import Entity
from actors.errors import ActorsError, InvalidArguments
from actors.system import ActorSystem
from persistence.sqlite import SqliteStore
from persistence.store import Requeue


def _entity_class(path: str) -> type[Entity]:
    module, _, name = path.partition(":")
    if not module or not name:
        raise InvalidArguments(f"name the entity class as module:Class, got {path!r}")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type) or not issubclass(obj, Entity):
        raise InvalidArguments(f"{path} is not an Entity class")
    return obj


def _args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InvalidArguments(f"arguments must be a JSON object: {e}") from None
    if not isinstance(value, dict):
        raise InvalidArguments("arguments must be a JSON object of name: value")
    return value


async def _inspect(a: argparse.Namespace) -> None:
    async with SqliteStore(a.db) as store:
        if a.cmd == "events":
            after = 0
            while batch := await store.read_events(a.type, a.id, after=after, limit=1000):
                for e in batch:
                    print(
                        json.dumps(
                            {
                                "seq": e.seq,
                                "type": e.type_name,
                                "v": e.version,
                                "data": json.loads(e.data),
                                "at": e.recorded_at,
                            }
                        )
                    )
                after = batch[-1].seq
        elif a.cmd == "inbox":
            for entry in await store.read_inbox(after=0, limit=10_000):
                s = entry.signal
                print(f"{entry.position}\t{s.entity_type}/{s.entity_id}\t{s.handler}\t{s.args}")
        elif a.cmd == "dead-letters":
            for d in await store.read_dead_letters(limit=10_000):
                s = d.signal
                print(f"{d.id}\t{s.entity_type}/{s.entity_id}\t{s.handler}\t{d.attempts} attempts\t{d.error}")
        else:
            await store.write([Requeue(a.dead_letter_id)])
            print(f"dead letter {a.dead_letter_id} is back in the inbox; it runs when its system starts")


async def _call(a: argparse.Namespace) -> None:
    cls = _entity_class(a.entity)
    kwargs = _args(a.args)
    # recover=False: pending work of the app (its inbox, timers and outbox) waits for the
    # app's own system, which runs every entity type it needs; this one runs only ``cls``
    async with ActorSystem(SqliteStore(a.db), [cls], recover=False) as system:
        ref = system.ref(cls, a.id)
        await system.recover_entity(cls, a.id)  # this entity's earlier signals go first
        if a.cmd == "tell":
            await ref.tell(a.handler, **kwargs)
            print("accepted")
        elif a.cmd == "ask":
            print(json.dumps(system.codec.converter.unstructure(await ref.ask(a.handler, **kwargs))))
        else:
            print(json.dumps(system.codec.converter.unstructure(await ref.query(a.handler, **kwargs))))


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``actors`` command."""
    p = argparse.ArgumentParser(prog="actors", description=__doc__.split("\n")[0])
    from actors import __version__

    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    ev = sub.add_parser("events", help="print an entity's event log")
    ev.add_argument("db")
    ev.add_argument("type")
    ev.add_argument("id")
    for name in ("inbox", "dead-letters"):
        sub.add_parser(name, help=f"list {name}").add_argument("db")
    rq = sub.add_parser("retry", help="move a dead letter back to the inbox")
    rq.add_argument("db")
    rq.add_argument("dead_letter_id", type=int)
    for name in ("ask", "tell", "query"):
        c = sub.add_parser(name, help=f"{name} an entity by handler name")
        c.add_argument("db")
        c.add_argument("entity", help="module:Class")
        c.add_argument("id")
        c.add_argument("handler")
        c.add_argument("args", nargs="?", default="{}", help="JSON object of arguments")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; prints errors as one line and returns 1 (2 for usage)."""
    a = parser().parse_args(argv)
    try:
        anyio.run(_call if a.cmd in ("ask", "tell", "query") else _inspect, a)
    except (ActorsError, ImportError) as e:
        print(f"actors: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
