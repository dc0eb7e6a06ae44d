"""Look into a store, live or not: entities, state at any sequence, history and queues.

:class:`Inspection` reads through a read-only :class:`persistence.inspect.Inspector`
(a SQLite file, or a PostgreSQL database given by a ``postgresql://`` DSN), so it
works on the database of a running system in another process and never changes it.
Given the entity classes, it decodes state with the same codec and appliers as the
runtime: the state as of sequence ``n`` is the newest snapshot at or before ``n``
plus the events after it, replayed. Without the classes, it shows what is stored as
JSON (the newest snapshot and the events after it). Every record here is frozen,
and :func:`to_json` turns any of them into plain JSON values with ISO 8601 times::

    async with Inspection("bank.db", entities=[Account]) as ins:
        print(to_json(await ins.state("Account", "alice", at=3)))
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import attrs
from cattrs.preconf.json import make_converter

from actors._entity import Entity, build_spec
from actors._spec import EntitySpec
from actors.errors import CorruptRecord, InvalidArguments, SerializationError, UnknownEntity
from persistence.codec import Codec
from persistence.inspect import Inspector, Members, inspector_for
from persistence.store import JournalEntry, SignalRecord, StoredEvent

__all__ = [
    "PARKING_KINDS",
    "DeadLetterItem",
    "EntityState",
    "EntityView",
    "EventView",
    "InboxItem",
    "Inspection",
    "InvocationItem",
    "MemberItem",
    "MembersView",
    "OutboxItem",
    "Progress",
    "StepItem",
    "TimerItem",
    "to_json",
]

Progress = Callable[[int, int], None]
"""Called with (done, total) while a long replay or scan runs."""

PARKING_KINDS: frozenset[str] = frozenset({"wait"})
"""Journal kinds of a checkpoint (``wait_until``, ``sleep``, a child's result are all
journaled as kind ``"wait"``). An invocation is parked when the newest such step holds
a ``"park"`` and no ``"resume"`` yet (a resumed wait records both)."""

_CHUNK = 1000
_json = make_converter()


def to_json(value: object) -> Any:
    """Plain JSON values (dicts, lists, str, numbers) of any record of this module."""
    return _json.unstructure(value)


def _limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidArguments(f"limit must be an int >= 1, got {limit!r}")
    return limit


def _time(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _parse(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text  # shown as stored rather than hidden


# ---------------------------------------------------------------- records


@attrs.frozen
class EventView:
    """One event of an entity's history."""

    seq: int
    type: str
    """The event's stored type name."""
    version: int
    data: object
    """The event's JSON data, as stored."""
    recorded_at: dt.datetime


@attrs.frozen
class EntityView:
    """An entity in a listing; ``state`` is set when a filter needed it."""

    entity_type: str
    entity_id: str
    last_seq: int
    updated_at: dt.datetime
    state: dict[str, object] | None = None


@attrs.frozen
class EntityState:
    """An entity's state as of sequence ``seq``.

    ``decoded``: replayed with the entity class, ``state`` is complete. Otherwise
    ``state`` is the newest snapshot at or before ``seq`` as stored (``None`` without
    one) and ``pending`` the events after it, which only the class could apply.
    """

    entity_type: str
    entity_id: str
    seq: int
    last_seq: int
    decoded: bool
    state: dict[str, object] | None
    snapshot_seq: int | None
    """The snapshot the replay started from (``None``: from the initial state)."""
    replayed: int
    """Events applied on top of it."""
    pending: tuple[EventView, ...] = ()


@attrs.frozen
class InboxItem:
    """A pending signal."""

    position: int
    entity_type: str
    entity_id: str
    signal_id: str
    handler: str
    args: object
    accepted_at: dt.datetime


@attrs.frozen
class OutboxItem:
    """A message waiting in the outbox for its target."""

    id: int
    entity_type: str
    entity_id: str
    signal_id: str
    handler: str
    args: object
    accepted_at: dt.datetime


@attrs.frozen
class DeadLetterItem:
    """A signal whose handler kept failing."""

    id: int
    entity_type: str
    entity_id: str
    signal_id: str
    handler: str
    args: object
    accepted_at: dt.datetime
    error: str
    traceback: str
    attempts: int
    failed_at: dt.datetime


@attrs.frozen
class TimerItem:
    """A durable timer."""

    entity_type: str
    entity_id: str
    key: str
    handler: str
    args: object
    due_at: dt.datetime
    every: float | None
    """Seconds between firings of a repeating timer."""


@attrs.frozen
class StepItem:
    """One journaled step of an invocation."""

    step: int
    kind: str
    name: str
    result: object
    recorded_at: dt.datetime


@attrs.frozen
class InvocationItem:
    """An unfinished invocation: started, with journaled steps; resumes after a restart."""

    entity_type: str
    entity_id: str
    invocation_id: str
    handler: str | None
    """``None`` when its signal is no longer in the inbox."""
    args: object
    accepted_at: dt.datetime | None
    status: str
    """``"parked"`` (waiting at a checkpoint) or ``"in_flight"``."""
    steps: tuple[StepItem, ...]


@attrs.frozen
class MemberItem:
    """A member (or client) of the cluster on a shared store, as the store records it."""

    name: str
    """The name it joined with (host and process by default)."""
    status: str
    """``"alive"``, ``"left"`` (it left cleanly) or ``"dead"`` (its lease ran out or its
    process is gone)."""
    shards: int
    """How many shards it owns now."""
    owns: str
    """Which, as ranges: ``0-63,128``."""
    heartbeat_at: dt.datetime
    """Its latest heartbeat, by the database's clock."""
    seen_ago: float
    """Seconds since that heartbeat, by the database's clock now."""
    serves: bool
    """False for a client (``serve=False``), which owns nothing."""
    member_id: str
    joined_at: dt.datetime
    ttl: float
    """Its lease, in seconds: without a heartbeat that long it is declared dead."""


@attrs.frozen
class MembersView:
    """Members of the cluster; ``clustered`` is False while no member ever joined the
    store (a store that has had one owner at a time)."""

    clustered: bool
    members: tuple[MemberItem, ...] = ()


def _signal_fields(s: SignalRecord) -> dict[str, Any]:
    return {
        "entity_type": s.entity_type,
        "entity_id": s.entity_id,
        "signal_id": s.signal_id,
        "handler": s.handler,
        "args": _parse(s.args),
        "accepted_at": _time(s.accepted_at),
    }


def _event(e: StoredEvent) -> EventView:
    return EventView(e.seq, e.type_name, e.version, _parse(e.data), _time(e.recorded_at))


# ---------------------------------------------------------------- inspection


class Inspection:
    """Decoded, read-only views of a store: open it with ``async with``.

    ``source`` is a database file path (opened with
    :class:`~persistence.inspect.SqliteInspector`), a ``postgresql://`` DSN (opened
    with :class:`~persistence.inspect.PostgresInspector`) or any :class:`Inspector`,
    which this object enters and leaves. ``entities`` are the
    entity classes used to decode state; types without a class are shown raw.
    """

    def __init__(
        self, source: Inspector | str | os.PathLike[str], *, entities: Sequence[type[Entity]] = ()
    ) -> None:
        if isinstance(source, (str, os.PathLike)):
            try:
                self.inspector: Inspector = inspector_for(source)
            except ValueError as e:
                raise InvalidArguments(str(e)) from None
        elif isinstance(source, Inspector) and not isinstance(source, type):
            self.inspector = source
        else:
            raise InvalidArguments(
                f"source must be a database path, a postgresql:// DSN or an Inspector, got {source!r:.80}"
            )
        if isinstance(entities, (str, bytes)) or not isinstance(entities, Sequence):
            raise InvalidArguments(f"entities must be a list of Entity classes, got {entities!r:.80}")
        self.codec = Codec()
        self.specs: dict[str, EntitySpec] = {}
        for cls in entities:
            spec = build_spec(cls, self.codec)
            self.specs[spec.name] = spec

    async def __aenter__(self) -> Self:
        await self.inspector.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.inspector.__aexit__(exc_type, exc, tb)

    # ------------------------------------------------------------ entities
    async def entity_types(self) -> list[str]:
        """Entity types with events in the store, sorted."""
        return await self.inspector.entity_types()

    async def entities(
        self,
        entity_type: str | None = None,
        *,
        where: Mapping[str, object] | None = None,
        limit: int = 1000,
        progress: Progress | None = None,
    ) -> list[EntityView]:
        """Entities (of one type, or all), in (type, id) order, at most ``limit``.

        ``where`` keeps those whose current state has each field equal to the value
        given (as JSON values: ``{"balance": 5}``); it needs ``entity_type`` and its
        class, and replays each entity of the type (``progress`` is told how far).
        """
        _limit(limit)
        if entity_type is not None:
            await self._check_type(entity_type)
        if not where:
            rows = await self.inspector.entities(entity_type, limit=limit)
            return [EntityView(r.entity_type, r.entity_id, r.last_seq, _time(r.updated_at)) for r in rows]
        spec = self._filter_spec(entity_type, where)
        found: list[EntityView] = []
        after: tuple[str, str] | None = None
        scanned = 0
        while len(found) < limit:
            page = await self.inspector.entities(spec.name, after=after, limit=_CHUNK)
            for r in page:
                st = await self.state(r.entity_type, r.entity_id)
                scanned += 1
                if st.state is not None and all(st.state.get(k) == v for k, v in where.items()):
                    found.append(
                        EntityView(r.entity_type, r.entity_id, r.last_seq, _time(r.updated_at), st.state)
                    )
                    if len(found) == limit:
                        break
            if progress is not None:
                progress(scanned, scanned + (_CHUNK if len(page) == _CHUNK else 0))
            if len(page) < _CHUNK:
                break
            after = (page[-1].entity_type, page[-1].entity_id)
        return found

    def _filter_spec(self, entity_type: str | None, where: Mapping[str, object]) -> EntitySpec:
        if entity_type is None:
            raise InvalidArguments("a filter on state fields needs an entity type")
        spec = self.specs.get(entity_type)
        if spec is None:
            raise InvalidArguments(
                f"a filter on {entity_type}'s state needs its class (give the entity classes)"
            )
        unknown = sorted(set(where) - set(spec.field_names))
        if unknown:
            raise InvalidArguments(
                f"{entity_type} has no field {', '.join(unknown)} (fields: {', '.join(spec.field_names)})"
            )
        return spec

    async def _check_type(self, entity_type: str) -> None:
        if entity_type in self.specs:
            return
        known = await self.inspector.entity_types()
        if entity_type not in known:
            listed = ", ".join(known) or "none"
            raise UnknownEntity(f"no entity type {entity_type!r} in the store (types with events: {listed})")

    async def history(
        self, entity_type: str, entity_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[EventView]:
        """The entity's events with ``seq > after``, in order (all of them by default)."""
        for name, v, low in (("after", after, 0), ("limit", limit, 1)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
                raise InvalidArguments(f"{name} must be an int >= {low}, got {v!r}")
        await self._check_entity(entity_type, entity_id)
        out: list[EventView] = []
        while limit is None or len(out) < limit:
            want = _CHUNK if limit is None else min(_CHUNK, limit - len(out))
            batch = await self.inspector.read_events(entity_type, entity_id, after=after, limit=want)
            out.extend(_event(e) for e in batch)
            if len(batch) < want:
                break
            after = batch[-1].seq
        return out

    async def _check_entity(self, entity_type: str, entity_id: str) -> int:
        last = await self.inspector.last_seq(entity_type, entity_id)
        if last == 0 and not await self.inspector.read_snapshots(entity_type, entity_id):
            await self._check_type(entity_type)
            raise UnknownEntity(f"no entity {entity_type}/{entity_id} in the store (it has no events)")
        return last

    async def state(
        self,
        entity_type: str,
        entity_id: str,
        *,
        at: int | None = None,
        progress: Progress | None = None,
    ) -> EntityState:
        """The entity's state as of sequence ``at`` (now by default); see :class:`EntityState`."""
        if at is not None and (not isinstance(at, int) or isinstance(at, bool) or at < 0):
            raise InvalidArguments(f"at must be a sequence number >= 0, got {at!r}")
        last = await self._check_entity(entity_type, entity_id)
        target = last if at is None else at
        if target > last:
            raise InvalidArguments(f"{entity_type}/{entity_id} has {last} events; there is no state at {at}")
        spec = self.specs.get(entity_type)
        if spec is None:
            return await self._raw_state(entity_type, entity_id, target, last)
        entity, start = await self._start(spec, entity_id, target)
        seq = start
        where = f"{entity_type}/{entity_id}"
        while seq < target:
            batch = await self.inspector.read_events(
                entity_type, entity_id, after=seq, limit=min(_CHUNK, target - seq)
            )
            if not batch:
                raise CorruptRecord(f"event log of {where} ends at {seq}, before {target}")
            for stored in batch:
                if stored.seq != seq + 1:
                    raise CorruptRecord(f"event log of {where} jumps from {seq} to {stored.seq}")
                event = self.codec.decode_event(where, stored)
                spec.appliers[type(event)](entity, event)
                seq = stored.seq
            if progress is not None:
                progress(seq - start, target - start)
        state = self.codec.converter.unstructure(entity, unstructure_as=spec.cls)
        snap = start if start > 0 else None
        return EntityState(entity_type, entity_id, target, last, True, state, snap, target - start)

    async def _start(self, spec: EntitySpec, entity_id: str, target: int) -> tuple[Entity, int]:
        """The newest usable snapshot at or before ``target``, or the initial state."""
        for snap in await self.inspector.read_snapshots(spec.name, entity_id):
            if snap.seq > target or snap.schema != spec.schema:
                continue
            try:
                entity = self.codec.loads_state(snap.state, spec.cls)
            except SerializationError:
                continue  # the runtime skips an unreadable snapshot the same way
            object.__setattr__(entity, "_actors_id", entity_id)
            object.__setattr__(entity, "_actors_ctx", None)
            return entity, snap.seq
        return spec.new(entity_id), 0

    async def _raw_state(self, entity_type: str, entity_id: str, target: int, last: int) -> EntityState:
        snaps = [s for s in await self.inspector.read_snapshots(entity_type, entity_id) if s.seq <= target]
        state: dict[str, object] | None = None
        start = 0
        if snaps:
            raw = _parse(snaps[0].state)
            state = raw if isinstance(raw, dict) else {"": raw}
            start = snaps[0].seq
        pending = []
        if target > start:
            pending = await self.history(entity_type, entity_id, after=start, limit=target - start)
        return EntityState(
            entity_type, entity_id, target, last, False, state, start if snaps else None, 0, tuple(pending)
        )

    # ------------------------------------------------------------ queues
    async def inbox(self, *, limit: int = 1000) -> list[InboxItem]:
        """Pending signals in acceptance order."""
        rows = await self.inspector.read_inbox(limit=_limit(limit))
        return [InboxItem(r.position, **_signal_fields(r.signal)) for r in rows]

    async def outbox(self, *, limit: int = 1000) -> list[OutboxItem]:
        """Undelivered outbox messages in order."""
        rows = await self.inspector.read_outbox(limit=_limit(limit))
        return [OutboxItem(r.id, **_signal_fields(r.signal)) for r in rows]

    async def dead_letters(self, *, limit: int = 1000) -> list[DeadLetterItem]:
        """Dead letters, oldest first."""
        rows = await self.inspector.read_dead_letters(limit=_limit(limit))
        return [
            DeadLetterItem(
                d.id,
                **_signal_fields(d.signal),
                error=d.error,
                traceback=d.traceback,
                attempts=d.attempts,
                failed_at=_time(d.failed_at),
            )
            for d in rows
        ]

    async def timers(self, *, limit: int = 1000) -> list[TimerItem]:
        """Durable timers in due order."""
        rows = await self.inspector.read_timers(limit=_limit(limit))
        return [
            TimerItem(t.entity_type, t.entity_id, t.key, t.handler, _parse(t.args), _time(t.due_at), t.every)
            for t in rows
        ]

    async def invocations(self, *, limit: int = 10_000) -> list[InvocationItem]:
        """Unfinished invocations (in flight or parked) with their journaled steps."""
        steps: dict[tuple[str, str, str], list[JournalEntry]] = defaultdict(list)
        for j in await self.inspector.read_journals(limit=_limit(limit)):
            steps[(j.entity_type, j.entity_id, j.invocation_id)].append(j)
        signals: dict[tuple[str, str, str], SignalRecord] = {}
        after = 0
        while steps and len(signals) < len(steps):
            page = await self.inspector.read_inbox(after=after, limit=_CHUNK)
            for entry in page:
                s = entry.signal
                if (s.entity_type, s.entity_id, s.signal_id) in steps:
                    signals[(s.entity_type, s.entity_id, s.signal_id)] = s
            if len(page) < _CHUNK:
                break
            after = page[-1].position
        return [_invocation(key, journal, signals.get(key)) for key, journal in steps.items()]

    async def members(self) -> MembersView:
        """Members of the cluster on a shared store, alive first (none until a member joins)."""
        m: Members = await self.inspector.members()
        return MembersView(m.clustered, tuple(_member(r) for r in m.rows))


def _member(r: Mapping[str, Any]) -> MemberItem:
    return MemberItem(
        name=str(r["name"]),
        status=str(r["status"]),
        shards=int(r["shards"]),
        owns=str(r["owns"]),
        heartbeat_at=_time(float(r["heartbeat_at"])),
        seen_ago=float(r["seen_ago"]),
        serves=bool(r["serves"]),
        member_id=str(r["member_id"]),
        joined_at=_time(float(r["joined_at"])),
        ttl=float(r["ttl"]),
    )


def _parked(journal: list[JournalEntry]) -> bool:
    """Whether the newest checkpoint of ``journal`` parked and has not resumed."""
    waits = [j for j in journal if j.kind in PARKING_KINDS and j.step >= 0]
    if not waits:
        return False
    newest = max(waits, key=lambda j: j.step)
    try:
        data = json.loads(newest.result)
    except ValueError:
        return False
    return isinstance(data, dict) and "park" in data and "resume" not in data


def _invocation(
    key: tuple[str, str, str], journal: list[JournalEntry], s: SignalRecord | None
) -> InvocationItem:
    items = tuple(StepItem(j.step, j.kind, j.name, _parse(j.result), _time(j.recorded_at)) for j in journal)
    status = "parked" if _parked(journal) else "in_flight"
    return InvocationItem(
        key[0],
        key[1],
        key[2],
        s.handler if s else None,
        _parse(s.args) if s else None,
        _time(s.accepted_at) if s else None,
        status,
        items,
    )
