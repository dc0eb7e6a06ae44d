"""One member of the bank on a shared store: it owns a share of the accounts and transfers.

``python -m examples.bank.member --db DB [--name N] [--lease-ttl SECONDS]`` joins the
bank on ``DB`` (a ``postgresql://`` DSN, or a SQLite file opened shared: every
process of this host may open it at once) as a member, prints
``ready <member id> <name>``, and serves its shards until SIGTERM or SIGINT (Ctrl-C).
It then leaves: its shards are handed off at once (the other members take them
without waiting for its lease to run out) and it exits with status 0.

Run several of them, and an HTTP front whose workers are clients (``BANK_SERVE=0``,
see ``examples.bank.http``), to run the bank as several processes or nodes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys

import anyio

from actors import ActorsError, ActorSystem
from examples.bank.model import ENTITIES
from examples.bank.worker import store_at


async def serve(db: str, name: str | None, lease_ttl: dt.timedelta) -> None:
    """Be a member of the bank on ``db`` until SIGTERM or SIGINT, then leave."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with ActorSystem(
            store_at(db, shared=True), ENTITIES, serve=True, lease_ttl=lease_ttl, member_name=name
        ) as system:
            me = next(m for m in await system.members() if m.me)
            print(f"ready {system.member_id} {me.name}", flush=True)
            async for signum in signals:
                print(f"{signal.Signals(signum).name}: leaving", flush=True)
                break
    print("left", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.bank.member", description=__doc__)
    parser.add_argument("--db", required=True, help="a postgresql:// DSN or a SQLite file (opened shared)")
    parser.add_argument("--name", default=None, help="this member's name (default: host:pid)")
    parser.add_argument(
        "--lease-ttl", type=float, default=10.0, metavar="SECONDS",
        help="seconds without a heartbeat after which the others take over (0.5 to 3600; default 10)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"],
        help="what the runtime logs to stderr (info: shards taken and handed off)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not 0.5 <= args.lease_ttl <= 3600:
        parser.error(f"--lease-ttl must be from 0.5 to 3600 seconds, got {args.lease_ttl}")
    try:
        anyio.run(serve, args.db, args.name, dt.timedelta(seconds=args.lease_ttl))
    except ActorsError as e:
        print(f"examples.bank.member: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
