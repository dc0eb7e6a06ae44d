"""Activation: an entity rebuilt from its newest readable snapshot and the tail of its
event log; and taking a snapshot. Internal."""

from __future__ import annotations

from typing import Any

from actors._kernel import Kernel
from actors._spec import EntitySpec
from actors.errors import ActorsError, CorruptRecord, SerializationError
from persistence.store import SaveSnapshot, SnapshotRecord

_REPLAY_CHUNK = 2000


async def load(kernel: Kernel, spec: EntitySpec, entity_id: str) -> tuple[Any, int, int]:
    """The entity, its last event's seq and its snapshot's seq, as stored."""
    store, codec = kernel.store, kernel.codec
    entity: Any = None
    seq = 0
    for snap in await store.read_snapshots(spec.name, entity_id):
        entity = _from_snapshot(kernel, spec, entity_id, snap)
        if entity is not None:
            seq = snap.seq
            break
    if entity is None:
        entity = spec.new(entity_id)
    snap_seq = seq
    where = f"{spec.name}/{entity_id}"
    while True:
        events = await store.read_events(spec.name, entity_id, after=seq, limit=_REPLAY_CHUNK)
        for stored in events:
            if stored.seq != seq + 1:
                raise CorruptRecord(
                    f"event log of {where} jumps from {seq} to {stored.seq}",
                    entity_type=spec.name,
                    entity_id=entity_id,
                    seq=stored.seq,
                )
            try:
                event = codec.decode_event(where, stored)
            except CorruptRecord as e:
                if e.entity_type is None:  # name the record as data, not only in the text
                    e.entity_type, e.entity_id, e.seq = spec.name, entity_id, stored.seq
                raise
            spec.appliers[type(event)](entity, event)
            seq = stored.seq
        if len(events) < _REPLAY_CHUNK:
            break
    return entity, seq, snap_seq


async def load_at(kernel: Kernel, spec: EntitySpec, entity_id: str, seq: int) -> Any:
    """The entity as it was after event ``seq``: the newest readable snapshot at or
    before it, then events up to it (a re-run of a workflow sees what it saw)."""
    store, codec = kernel.store, kernel.codec
    entity: Any = None
    at = 0
    for snap in await store.read_snapshots(spec.name, entity_id):
        if snap.seq <= seq:
            entity = _from_snapshot(kernel, spec, entity_id, snap)
            if entity is not None:
                at = snap.seq
                break
    if entity is None:
        entity = spec.new(entity_id)
    where = f"{spec.name}/{entity_id}"
    while at < seq:
        events = await store.read_events(spec.name, entity_id, after=at, limit=min(_REPLAY_CHUNK, seq - at))
        if not events:
            raise CorruptRecord(
                f"event log of {where} ends at {at}, before seq {seq} a workflow's journal names",
                entity_type=spec.name,
                entity_id=entity_id,
                seq=at,
            )
        for stored in events:
            event = codec.decode_event(where, stored)
            spec.appliers[type(event)](entity, event)
            at = stored.seq
    return entity


def _from_snapshot(kernel: Kernel, spec: EntitySpec, entity_id: str, snap: SnapshotRecord) -> Any:
    where = f"snapshot at seq {snap.seq} of {spec.name}/{entity_id}"
    if snap.schema != spec.schema:
        kernel.log.warning(
            "skipping %s: taken with another state schema", where, extra=_extra(spec, entity_id)
        )
        return None
    try:
        entity = kernel.codec.loads_state(snap.state, spec.cls)
    except SerializationError as e:
        kernel.log.warning("skipping unreadable %s: %s", where, e, extra=_extra(spec, entity_id))
        return None
    object.__setattr__(entity, "_actors_id", entity_id)
    object.__setattr__(entity, "_actors_ctx", None)
    return entity


def take_snapshot(kernel: Kernel, spec: EntitySpec, entity_id: str, entity: object, seq: int) -> bool:
    """Queue a snapshot of ``entity`` at ``seq``; False if its state cannot be encoded."""
    try:
        state = kernel.codec.dumps(entity, spec.cls, what="snapshot")
    except ActorsError as e:
        kernel.log.warning(
            "no snapshot of <Actor %s/%s>: %s", spec.name, entity_id, e, extra=_extra(spec, entity_id)
        )
        return False
    snap = SnapshotRecord(spec.name, entity_id, seq, spec.schema, state, kernel.clock.now().timestamp())
    kernel.committer.submit_nowait(SaveSnapshot(snap))
    return True


def _extra(spec: EntitySpec, entity_id: str) -> dict[str, object]:
    return {"entity_type": spec.name, "entity_id": entity_id}
