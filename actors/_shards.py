"""Which shards this system owns, and the hooks by which lower layers reach the
cluster (wake a shard's owner, publish an outcome, give up lost shards). Internal.

Alone on its store (an exclusive store), a system owns every entity and nothing here
costs more than one attribute test. As a member of a shared store it owns the
shards it claimed, each at an epoch (its fencing token); a client owns none.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from persistence.store import SignalRecord, shard_of


def _nothing(*_args: object) -> None:
    return None


class Ownership:
    """The shards this system owns (``clustered`` False: everything, as one owner)."""

    __slots__ = (
        "clustered",
        "count",
        "epochs",
        "lose",
        "member_id",
        "poll_gen",
        "publish_outcome",
        "recent",
        "send",
        "wake_inbox",
    )

    def __init__(self) -> None:
        self.clustered = False
        """Whether the system is a member or client of a shared store."""
        self.member_id = ""
        self.count = 1
        """The store's shard count."""
        self.epochs: dict[int, int] = {}
        """Owned shard -> the epoch it was claimed at."""
        self.send: Callable[[str, str], None] = _nothing
        """Wake other members: ``send(topic, item)`` (set by the cluster)."""
        self.wake_inbox: Callable[[int], None] = _nothing
        """Tell the owner of a shard that its inbox has news (set by the cluster)."""
        self.publish_outcome: Callable[[str], None] = _nothing
        """Tell every member that a signal's outcome was committed (set by the cluster)."""
        self.lose: Callable[[Collection[int]], None] = _nothing
        """Give up shards the store refused (``ShardLost``): set by the cluster."""
        self.poll_gen = 0
        """Counts the inbox polls begun (see ``recent``)."""
        self.recent: dict[str, int] = {}
        """Inbox signals handled here -> ``poll_gen`` then: a poll begun before a signal
        was handled may still show it, and must not route it again."""

    def shard(self, entity_type: str, entity_id: str) -> int:
        """The entity's shard."""
        return shard_of(entity_type, entity_id, self.count)

    def owns(self, entity_type: str, entity_id: str) -> bool:
        """Whether this system runs the entity now."""
        return not self.clustered or shard_of(entity_type, entity_id, self.count) in self.epochs

    def epoch(self, entity_type: str, entity_id: str) -> int | None:
        """The epoch this system owns the entity's shard at (``None``: not owned)."""
        if not self.clustered:
            return 0
        return self.epochs.get(shard_of(entity_type, entity_id, self.count))

    def same_epoch(self, s: SignalRecord, before: Mapping[int, int | None]) -> bool:
        """Whether the signal's entity is owned now at the epoch ``before`` recorded for
        its shard (a snapshot of ``epochs`` taken before a read of the inbox). A read
        that began before a shard moved away and back may show a signal that another
        member has processed since: it must not be routed again."""
        if not self.clustered:
            return True
        shard = shard_of(s.entity_type, s.entity_id, self.count)
        now = self.epochs.get(shard)
        return now is not None and now == before.get(shard)

    def owned(self) -> frozenset[int] | None:
        """The owned shards (``None``: not clustered, everything)."""
        return frozenset(self.epochs) if self.clustered else None
