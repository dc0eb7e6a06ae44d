"""Checkpoints of a workflow invocation: ``wait_until``/``sleep``/a child's result
commit what ran so far, journal the wait and park; a re-run replays its committed
segments on a scratch copy (checking, not keeping, their effects) and goes on where
it was parked. Also ``patched``. Functions of the invocation, as ``run_activity``
and ``gather`` are. Internal."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from actors._activities import StepHost
from actors._entity import Entity
from actors._ids import check_text
from actors._journal import StepJournal
from actors._spec import EntitySpec
from actors.errors import InvalidArguments, NonDeterminismError
from persistence.store import JournalEntry, NewEvent, StoredEvent

PATCH_STEP = -1000
"""Journal steps of ``patched`` answers count down from here (apart from the step numbers)."""
MAX_CHANGE_ID = 256


class Replay:
    """A re-run's replay of its committed segments on a scratch copy of the entity."""

    __slots__ = ("expected", "replaying")

    def __init__(self, expected: list[StoredEvent]) -> None:
        self.replaying = True
        """Still inside committed segments (effects are checked, not kept)."""
        self.expected = expected
        """The stored events of the segment being replayed, not yet matched."""


class Parent(Protocol):
    """The actor as a checkpoint sees it."""

    @property
    def seq(self) -> int:
        """The entity's last committed event."""
        ...

    @property
    def id(self) -> str:
        """The entity's id."""
        ...

    @property
    def spec(self) -> EntitySpec:
        """The entity's spec."""
        ...

    async def state_at(self, seq: int) -> Entity:
        """The entity as it was after event ``seq``."""
        ...


class Waiter(StepHost, Protocol):
    """What a checkpoint needs of its invocation (implemented by ``Invocation``)."""

    replay: Replay | None
    segment_from: int
    patches: int
    target: Entity | None

    @property
    def actor(self) -> Parent:
        """The actor that runs the invocation."""
        ...

    @property
    def events(self) -> tuple[NewEvent, ...]:
        """The events of the running segment."""
        ...

    @property
    def pending_journal(self) -> list[JournalEntry]:
        """Journal entries committed with the next checkpoint."""
        ...

    def journal_later(self, entry: JournalEntry) -> None:
        """A journal entry committed with the next checkpoint."""
        ...

    @property
    def journal(self) -> StepJournal:
        """The journal of the invocation's steps."""
        ...

    def drop_effects(self) -> None:
        """Forget the running segment's effects."""
        ...

    def entry(self, step: int, kind: str, name: str, result: str) -> JournalEntry:
        """A journal entry of this invocation."""
        ...

    def nondeterminism(self, what: str) -> NonDeterminismError:
        """The error of a re-run that differs from its journal."""
        ...

    def take_cancel(self) -> None:
        """Take a journaled cancellation request into the cancel flag."""
        ...

    def assert_async(self, call: str) -> None:
        """Refuse a call that must be awaited from a plain ``def`` handler."""
        ...

    async def commit_checkpoint(self, entries: list[JournalEntry]) -> None:
        """Commit the running segment with ``entries``, in one transaction."""
        ...

    async def park(
        self,
        predicate: Callable[[], object] | None,
        deadline: float | None,
        deadline_value: object,
        watch: str | None,
    ) -> Any:
        """Park until the wait is over; returns the wake value."""
        ...


def check_delta(name: str, value: object, *, optional: bool) -> None:
    """InvalidArguments unless ``value`` is a timedelta >= 0 (or None if ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, dt.timedelta) or value < dt.timedelta(0):
        raise InvalidArguments(f"{name} must be a timedelta >= 0, got {value!r:.80}")


def wait_until(
    inv: Waiter, predicate: Callable[[], object], timeout: dt.timedelta | None
) -> Coroutine[Any, Any, bool]:
    """``self.wait_until``: checked at once, then a checkpoint (see :func:`wait`)."""
    inv.assert_async("self.wait_until(...)")
    if not callable(predicate):
        raise InvalidArguments(f"wait_until() takes a function, got {predicate!r:.80}")
    check_delta("timeout", timeout, optional=True)
    return _wait_bool(inv, predicate, timeout)


async def _wait_bool(inv: Waiter, predicate: Callable[[], object], timeout: dt.timedelta | None) -> bool:
    return bool(await wait(inv, "wait_until", predicate, timeout, False, None))


def sleep(inv: Waiter, duration: dt.timedelta) -> Coroutine[Any, Any, None]:
    """``self.sleep``: checked at once, then a checkpoint that parks for ``duration``."""
    inv.assert_async("self.sleep(...)")
    check_delta("duration", duration, optional=False)
    return _sleep(inv, duration)


async def _sleep(inv: Waiter, duration: dt.timedelta) -> None:
    await wait(inv, "sleep", None, duration, True, None)


async def wait(
    inv: Waiter,
    name: str,
    predicate: Callable[[], object] | None,
    after: dt.timedelta | None,
    deadline_value: object,
    watch: str | None,
) -> Any:
    """A checkpoint: commit, journal the wait, park; resume as the only writer."""
    step = inv.reserve_step()
    entry = await inv.recorded(step, "wait", name)
    park: dict[str, Any]
    if entry is not None:
        data = json.loads(entry.result)
        if "resume" in data:  # a committed segment ended here: replayed
            await _replay_boundary(inv, step, data)
            return data["resume"]["value"]
        park = data["park"]
        if inv.replay is not None:  # where it was parked: the replay ends here
            _drop_replayed_effects(inv)
            inv.replay.replaying = False
    else:
        inv.cancel_flag.deliver()
        deadline = None if after is None else (inv.kernel.clock.now() + after).timestamp()
        park = {"from": inv.segment_from, "to": inv.actor.seq + len(inv.events), "deadline": deadline}
        entries = [*inv.pending_journal, inv.entry(step, "wait", name, json.dumps({"park": park}))]
        await inv.commit_checkpoint(entries)
        inv.pending_journal.clear()
        inv.journal.entries[step] = entries[-1]
    value = await inv.park(predicate, park["deadline"], deadline_value, watch)
    inv.segment_from = inv.actor.seq
    resume = {"park": park, "resume": {"seq": inv.actor.seq, "value": value}}
    inv.journal_later(inv.entry(step, "wait", name, json.dumps(resume)))
    return value


async def prepare_rerun(inv: Waiter) -> Entity | None:
    """Read the journal of an invocation that may have run before; when it holds
    committed segments, return the scratch entity its re-run starts on (the state
    its first segment saw), else None (it re-runs on the live state)."""
    j = inv.journal
    await j.load(force=True)
    inv.take_cancel()
    parks = _parks(inv)
    if not parks:
        return None
    first = parks[0][1]["park"]
    entity = await inv.actor.state_at(int(first["from"]))
    inv.replay = Replay(await _events(inv, int(first["from"]), int(first["to"])))
    inv.segment_from = int(first["from"])
    return entity


def patched(inv: Waiter, change_id: str) -> bool:
    """Whether ``inv`` runs change ``change_id``'s code (see ``Entity.patched``)."""
    check_text(change_id, "change id", max_length=MAX_CHANGE_ID)
    inv.patches += 1
    step = PATCH_STEP - inv.patches
    j = inv.journal
    entry = j.entries.get(step)
    if entry is not None:
        if entry.name != change_id:
            raise inv.nondeterminism(f"patched({change_id!r}) where the journal holds {entry.name!r}")
        return bool(json.loads(entry.result))
    # an invocation journaled before the change has steps past this point, or
    # committed segments still being replayed: it keeps its old code
    old = (inv.replay is not None and inv.replay.replaying) or any(st > j.step for st in j.entries if st > 0)
    answer = not old
    inv.journal_later(inv.entry(step, "patch", change_id, json.dumps(answer)))
    return answer


def _parks(inv: Waiter) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for step, e in sorted(inv.journal.entries.items()):
        if e.kind == "wait":
            data = json.loads(e.result)
            if "park" in data:
                out.append((step, data))
    return out


async def _events(inv: Waiter, after: int, upto: int) -> list[StoredEvent]:
    if upto <= after:
        return []
    a = inv.actor
    return await inv.kernel.store.read_events(a.spec.name, a.id, after=after, limit=upto - after)


def _drop_replayed_effects(inv: Waiter) -> None:
    rp = inv.replay
    assert rp is not None
    if rp.expected:
        raise inv.nondeterminism(
            f"it emits fewer events than its committed segment ({rp.expected[0].type_name} and "
            f"{len(rp.expected) - 1} more are missing)"
        )
    inv.drop_effects()


async def _replay_boundary(inv: Waiter, step: int, data: dict[str, Any]) -> None:
    """A replayed wait that resumed: go on from the state it resumed on."""
    assert inv.replay is not None
    assert inv.target is not None
    _drop_replayed_effects(inv)
    seq = int(data["resume"]["seq"])
    fresh = await inv.actor.state_at(seq)
    for name in inv.actor.spec.field_names:
        object.__setattr__(inv.target, name, getattr(fresh, name))
    nxt = [d for st, d in _parks(inv) if st > step]
    inv.replay.expected = await _events(inv, seq, int(nxt[0]["park"]["to"])) if nxt else []
    inv.segment_from = seq
