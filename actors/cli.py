"""The ``actors`` command: look into a store and send signals by name.

Read-only, safe on the database of a running system (no lock, never creates a file):

    actors entities DB [TYPE] [--where FIELD=VALUE] [--entities MODULE:CLASS,...]
    actors show DB TYPE ID [--at SEQ] [--entities MODULE:CLASS,...]
    actors history DB TYPE ID         an entity's events
    actors timers|invocations|inbox|outbox|dead-letters|members DB
    actors events DB TYPE ID          the event log of one entity, as JSON lines
    actors ui DB                      the web UI on localhost (needs the ``ui`` extra)

Each read-only command but ``events`` takes ``--json``. These need the store to
themselves (no running system):

    actors retry DB DEAD_LETTER_ID    move a dead letter back to the inbox
    actors ask|tell|query DB MODULE:CLASS ID HANDLER [JSON_ARGS]

``ask``/``tell``/``query`` import the entity class you name on the command line
(never a name read from the database) and take the arguments as a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from actors import _inspect_cli
from actors._inspect_cli import load_entity_class
from actors._system import ActorSystem
from actors.errors import ActorsError, InvalidArguments
from persistence.inspect import SqliteInspector
from persistence.sqlite import SqliteStore
from persistence.store import Requeue


def _args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InvalidArguments(f"arguments must be a JSON object: {e}") from None
    if not isinstance(value, dict):
        raise InvalidArguments("arguments must be a JSON object of name: value")
    return value


async def _events(a: argparse.Namespace) -> None:
    async with SqliteInspector(a.db) as ins:
        after = 0
        while batch := await ins.read_events(a.type, a.id, after=after, limit=1000):
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


async def _retry(a: argparse.Namespace) -> None:
    async with SqliteStore(a.db) as store:
        await store.write([Requeue(a.dead_letter_id)])
    print(f"dead letter {a.dead_letter_id} is back in the inbox; it runs when its system starts")


async def _call(a: argparse.Namespace) -> None:
    cls = load_entity_class(a.entity)
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
    _inspect_cli.add_parsers(sub)
    ui = sub.add_parser("ui", help="serve the web UI on localhost")
    ui.add_argument("db")
    ui.add_argument("--entities", metavar="MODULE:CLASS,...", help="entity classes to decode state")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=8765)
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


_COMMANDS = {"events": _events, "retry": _retry, "ask": _call, "tell": _call, "query": _call}


def _ui(a: argparse.Namespace) -> int:
    try:
        import uvicorn

        from actors.ui import app
    except ImportError as e:
        raise InvalidArguments(
            f"the web UI needs the ui extra (pip install 'durable-actors[ui]'): {e}"
        ) from None
    application = app(a.db, entities=_inspect_cli.entity_classes(a.entities))
    print(f"actors ui: http://{a.host}:{a.port}/ (read-only view of {a.db}; Ctrl-C stops)", flush=True)
    uvicorn.run(application, host=a.host, port=a.port, log_level="warning")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; prints errors as one line and returns 1 (2 for usage)."""
    a = parser().parse_args(argv)
    try:
        if a.cmd == "ui":
            return _ui(a)
        anyio.run(_COMMANDS.get(a.cmd, _inspect_cli.run), a)
    except (ActorsError, ImportError) as e:
        print(f"actors: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
