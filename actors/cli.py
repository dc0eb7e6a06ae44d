"""The ``actors`` command: look into a store and send signals by name.

``DB`` is a SQLite file or a ``postgresql://`` DSN. Read-only, safe on the database
of a running system or cluster (no lock, never creates a file or a table):

    actors entities DB [TYPE] [--where FIELD=VALUE] [--entities MODULE:CLASS,...]
    actors show DB TYPE ID [--at SEQ] [--entities MODULE:CLASS,...]
    actors history DB TYPE ID         an entity's events
    actors timers|invocations|inbox|outbox|dead-letters|members DB
    actors events DB TYPE ID          the event log of one entity, as JSON lines
    actors ui DB                      the web UI on localhost (needs the ``ui`` extra)

Each read-only command but ``events`` takes ``--json``. These write; on a SQLite
file they need it to themselves (no running system):

    actors retry DB DEAD_LETTER_ID    move a dead letter back to the inbox
    actors prune DB [--marks-older-than 30d] [--dead-letters-older-than 90d]
                    [--keep-dead-letters N] [--json]
                                      forget old processed marks and dead letters

Calls, beside running members too: on a shared store (a DSN, or a SQLite file that
members use) the command is a client (``serve=False``) and the entity's owner runs
the handler; on an unused SQLite file it runs the entity itself:

    actors ask|tell|query DB MODULE:CLASS ID HANDLER [JSON_ARGS] [--timeout S]

A deploy gate, read-only (exit 1 when the stored history does not fit the code):

    actors replay DB MODULE:CLASS [MODULE:CLASS ...] [--json]

``ask``/``tell``/``query`` import the entity class you name on the command line
(never a name read from the database) and take the arguments as a JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table
from rich.text import Text

from actors import _inspect_cli
from actors._inspect_cli import load_entity_class
from actors._system import ActorSystem
from actors.errors import ActorsError, DeadlineExceeded, InvalidArguments
from persistence.errors import DatabaseNotFound, StoreLocked
from persistence.inspect import PostgresInspector, SqliteInspector, inspector_for, is_dsn
from persistence.postgres import PostgresStore, redact
from persistence.sqlite import SqliteStore
from persistence.store import Prune, Pruned, Requeue, Store


def _inspector(db: str) -> SqliteInspector | PostgresInspector:
    try:
        return inspector_for(db)
    except ValueError as e:
        raise InvalidArguments(str(e)) from None


def _args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InvalidArguments(f"arguments must be a JSON object: {e}") from None
    if not isinstance(value, dict):
        raise InvalidArguments("arguments must be a JSON object of name: value")
    return value


async def _events(a: argparse.Namespace) -> None:
    async with _inspector(a.db) as ins:
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


_DURATION = re.compile(r"([0-9]{1,9})([dhms])")
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PRUNE_HELP = """\
Forget what retention allows, in one transaction: processed marks (the memory of
idempotency keys) older than --marks-older-than, with the journals of invocations
that are no longer pending; dead letters older than --dead-letters-older-than;
all but the newest --keep-dead-letters dead letters. A key repeated after its mark
is pruned is applied again: keep marks longer than any client retries.

It writes. On a SQLite file it needs the store to itself: on the file of a
running system it fails with StoreLocked and changes nothing. On PostgreSQL it is
one transaction beside any running members (they prune the same way). A running
system prunes itself periodically with ActorSystem(retention=actors.Retention(...)).
"""


def duration(text: str) -> dt.timedelta:
    """A command-line duration: a whole number and a unit, ``30d``, ``12h``, ``90m``, ``45s``."""
    m = _DURATION.fullmatch(text)
    if m is None:
        raise argparse.ArgumentTypeError(
            f"{text!r:.40} is not a duration: a whole number and a unit d, h, m or s (30d, 12h, 90m, 45s)"
        )
    return dt.timedelta(seconds=int(m[1]) * _UNIT[m[2]])


def count(text: str) -> int:
    """A command-line count: a whole number >= 0 (digits only)."""
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise argparse.ArgumentTypeError(f"{text!r:.40} is not a count: write a whole number >= 0")
    return int(text)


def _prune_write(a: argparse.Namespace, now: float) -> Prune:
    marks, dead, keep = a.marks_older_than, a.dead_letters_older_than, a.keep_dead_letters
    if marks is None and dead is None and keep is None:
        raise InvalidArguments(
            "say what to prune: --marks-older-than, --dead-letters-older-than and/or --keep-dead-letters"
        )
    return Prune(
        marks_before=None if marks is None else now - marks.total_seconds(),
        dead_letters_before=None if dead is None else now - dead.total_seconds(),
        keep_dead_letters=keep,
    )


def _writable_store(where: str) -> Store:
    """The store at ``where`` (a PostgreSQL DSN or an existing SQLite file), never created."""
    if where.startswith(("postgresql://", "postgres://")):
        return PostgresStore(where, lock_wait=0)
    if not Path(where).is_file():
        raise DatabaseNotFound(f"no database file at {where} (nothing was created)")
    return SqliteStore(where)


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def _rules(p: Prune) -> tuple[str, str, str]:
    """What each row of the prune table removed, in words."""
    marks = journals = "kept"
    if p.marks_before is not None:
        marks = f"processed before {_iso(p.marks_before)}"
        journals = f"of finished invocations, recorded before {_iso(p.marks_before)}"
    dead = []
    if p.dead_letters_before is not None:
        dead.append(f"failed before {_iso(p.dead_letters_before)}")
    if p.keep_dead_letters is not None:
        dead.append(f"beyond the newest {p.keep_dead_letters}")
    return marks, " or ".join(dead) or "kept", journals


async def _prune(a: argparse.Namespace) -> None:
    prune = _prune_write(a, time.time())
    async with _writable_store(a.db) as store:
        [result] = await store.write([prune])
    if not isinstance(result, Pruned):  # pragma: no cover - a store breaking the protocol
        raise TypeError(f"the store answered Prune with {result!r}")
    if a.json:
        doc = {
            "marks": result.marks,
            "dead_letters": result.dead_letters,
            "journals": result.journals,
            "marks_before": _iso(prune.marks_before),
            "dead_letters_before": _iso(prune.dead_letters_before),
            "keep_dead_letters": prune.keep_dead_letters,
        }
        print(json.dumps(doc))
        return
    marks, dead, journals = _rules(prune)
    table = Table("removed", "count", "rule", title=f"pruned {redact(a.db) if is_dsn(a.db) else a.db}")
    table.add_row("processed marks", str(result.marks), marks)
    table.add_row("dead letters", str(result.dead_letters), dead)
    table.add_row("journal steps", str(result.journals), journals)
    Console().print(table)


_CLIENT_TIMEOUT = 60.0
"""Seconds a client's ``ask``/``query`` waits for the entity's owner by default."""


async def _in_shared_use(db: str) -> bool:
    """Whether ``db`` is a shared store, or a SQLite file that members ever joined (a
    client leaves it to them). Checks the database is ours; never creates anything."""
    if is_dsn(db):
        return True
    if not await anyio.Path(db).exists():
        return False  # today's behaviour: the call makes a new database file
    async with SqliteInspector(db) as ins:
        return (await ins.members()).clustered


async def _call(a: argparse.Namespace) -> None:
    cls = load_entity_class(a.entity)
    kwargs = _args(a.args)
    if a.timeout is not None and not 0 < a.timeout <= 86_400:
        raise InvalidArguments(f"--timeout must be seconds > 0 (at most a day), got {a.timeout}")
    refused: StoreLocked | None = None
    if not await _in_shared_use(a.db):
        try:
            # recover=False: pending work of the app (its inbox, timers and outbox) waits
            # for the app's own system, which runs every entity type it needs; this one
            # runs only ``cls``
            async with ActorSystem(SqliteStore(a.db), [cls], recover=False) as system:
                await system.recover_entity(cls, a.id)  # this entity's earlier signals go first
                await _send(a, system, cls, kwargs, a.timeout)
            return
        except StoreLocked as e:
            refused = e  # a running system holds the file: members (shared) let a client in
    store = PostgresStore(a.db) if is_dsn(a.db) else SqliteStore(a.db, shared=True)
    try:
        # a client: it owns no shard; the entity's owner (a running member) runs the call
        async with ActorSystem(store, [cls], serve=False) as system:
            try:
                await _send(a, system, cls, kwargs, _CLIENT_TIMEOUT if a.timeout is None else a.timeout)
            except DeadlineExceeded as e:
                alive = [m for m in await system.members() if m.status == "alive" and m.serves]
                queued = "; the signal stays accepted and runs when a member serves its shard"
                raise DeadlineExceeded(
                    f"{e}{queued if a.cmd == 'ask' else ''} "
                    f"({len(alive)} member{'' if len(alive) == 1 else 's'} alive)"
                ) from None
    except StoreLocked:
        if refused is not None:  # an exclusive owner: its own refusal says who holds it
            raise refused from None
        raise


async def _send(
    a: argparse.Namespace, system: ActorSystem, cls: type[Any], kwargs: dict[str, Any], timeout: float | None
) -> None:
    ref = system.ref(cls, a.id).options(timeout=timeout)
    if a.cmd == "tell":
        await ref.tell(a.handler, **kwargs)
        print("accepted")
    elif a.cmd == "ask":
        print(json.dumps(system.codec.converter.unstructure(await ref.ask(a.handler, **kwargs))))
    else:
        print(json.dumps(system.codec.converter.unstructure(await ref.query(a.handler, **kwargs))))


_REPLAY_HELP = """\
Check the stored history against the code of the entity classes named: every stored
entity of those types has its events replayed through the new appliers, and every
parked workflow is re-run against its journal on a scratch copy of its entity. No
activity is called, nothing is sent, nothing is written (the database is opened
read-only). Each incompatibility is printed with its entity, invocation and step.
Exit status 1 when there is any, 0 when the code fits the history: a deploy gate.
"""


async def _replay(a: argparse.Namespace) -> int:
    from actors.testing import replay

    classes = [load_entity_class(name) for name in a.entities]
    report = await replay(a.db, entities=classes)
    if a.json:
        doc = {
            "entities": report.entities,
            "invocations": report.invocations,
            "problems": [
                {
                    "entity_type": p.entity_type,
                    "entity_id": p.entity_id,
                    "invocation": p.invocation,
                    "step": p.step,
                    "what": p.what,
                }
                for p in report.problems
            ],
        }
        print(json.dumps(doc))
    else:
        console = Console()
        checked = f"checked {report.entities} entities and {report.invocations} parked invocations"
        if report.problems:
            table = Table("entity", "invocation", "step", "what differs", title=f"replay of {a.db}")
            for p in report.problems:
                cells = (f"{p.entity_type}/{p.entity_id}", p.invocation or "-", p.step, p.what)
                table.add_row(*(Text(c) for c in cells))  # stored text, never markup
            console.print(table, markup=False)
            n = len(report.problems)
            console.print(f"{checked}: {n} problem{'' if n == 1 else 's'}", markup=False)
        else:
            console.print(f"{checked}: no problems", markup=False)
    return 1 if report.problems else 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``actors`` command."""
    p = argparse.ArgumentParser(prog="actors", description=__doc__.split("\n")[0])
    from actors import __version__

    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    ev = sub.add_parser("events", help="print an entity's event log")
    ev.add_argument("db", help="the database file or a postgresql:// DSN (read-only; never created)")
    ev.add_argument("type")
    ev.add_argument("id")
    _inspect_cli.add_parsers(sub)
    ui = sub.add_parser("ui", help="serve the web UI on localhost")
    ui.add_argument("db", help="the database file or a postgresql:// DSN (read-only; never created)")
    ui.add_argument("--entities", metavar="MODULE:CLASS,...", help="entity classes to decode state")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=8765)
    rq = sub.add_parser("retry", help="move a dead letter back to the inbox")
    rq.add_argument("db")
    rq.add_argument("dead_letter_id", type=int)
    pr = sub.add_parser(
        "prune",
        help="forget old processed marks and dead letters (a SQLite file: with no system running)",
        description=_PRUNE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pr.add_argument("db", help="the database file (never created) or a postgresql:// DSN")
    pr.add_argument("--marks-older-than", type=duration, metavar="DURATION", help="e.g. 30d")
    pr.add_argument("--dead-letters-older-than", type=duration, metavar="DURATION", help="e.g. 90d")
    pr.add_argument("--keep-dead-letters", type=count, metavar="N", help="keep only the newest N")
    pr.add_argument("--json", action="store_true", help="print one JSON document")
    rp = sub.add_parser(
        "replay",
        help="check stored history against new entity code (exit 1 on problems)",
        description=_REPLAY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument("db", help="the database file (opened read-only; never created)")
    rp.add_argument("entities", nargs="+", metavar="MODULE:CLASS", help="the entity classes to check")
    rp.add_argument("--json", action="store_true", help="print one JSON document")
    for name in ("ask", "tell", "query"):
        c = sub.add_parser(name, help=f"{name} an entity by handler name")
        c.add_argument("db", help="the database file or a postgresql:// DSN")
        c.add_argument("entity", help="module:Class")
        c.add_argument("id")
        c.add_argument("handler")
        c.add_argument("args", nargs="?", default="{}", help="JSON object of arguments")
        c.add_argument(
            "--timeout",
            type=float,
            metavar="SECONDS",
            help=f"give up waiting (DeadlineExceeded); a client waits {_CLIENT_TIMEOUT:.0f} s by default",
        )
    return p


_COMMANDS: dict[str, Any] = {
    "replay": _replay,
    "events": _events,
    "retry": _retry,
    "prune": _prune,
    "ask": _call,
    "tell": _call,
    "query": _call,
}


def _ui(a: argparse.Namespace) -> int:
    try:
        import uvicorn

        from actors.ui import app
    except ImportError as e:
        raise InvalidArguments(
            f"the web UI needs the ui extra (pip install 'durable-actors[ui]'): {e}"
        ) from None
    application = app(a.db, entities=_inspect_cli.entity_classes(a.entities))
    where = redact(a.db) if is_dsn(a.db) else a.db
    print(f"actors ui: http://{a.host}:{a.port}/ (read-only view of {where}; Ctrl-C stops)", flush=True)
    uvicorn.run(application, host=a.host, port=a.port, log_level="warning")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; prints errors as one line and returns 1 (2 for usage)."""
    a = parser().parse_args(argv)
    try:
        if a.cmd == "ui":
            return _ui(a)
        rc = anyio.run(_COMMANDS.get(a.cmd, _inspect_cli.run), a)
    except (ActorsError, ImportError) as e:
        print(f"actors: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
