"""The retention job: prunes what a ``Retention`` policy lets go, on the system's clock.

Each run writes ``Prune`` through the group committer (so it is one more write in a
batch, never a long lock of its own), ``batch`` rows of each kind at a time, and
repeats while a kind came back full. Cutoffs are business time (``clock.now()``);
the period between runs is monotonic (``clock.sleep``).
"""

from __future__ import annotations

import logging

from actors._clock import Clock
from actors._commit import GroupCommitter
from actors._policies import Retention
from actors.errors import StoreError
from persistence.store import Prune, Pruned


async def prune_once(committer: GroupCommitter, clock: Clock, policy: Retention) -> Pruned:
    """Prune everything the policy lets go now; returns the totals removed."""
    now = clock.now().timestamp()
    write = Prune(
        marks_before=now - policy.marks_for.total_seconds() if policy.marks_for is not None else None,
        dead_letters_before=(
            now - policy.dead_letters_for.total_seconds() if policy.dead_letters_for is not None else None
        ),
        keep_dead_letters=policy.keep_dead_letters,
        limit=policy.batch,
    )
    marks = dead = journals = 0
    while True:
        result = await committer.submit(write)
        if not isinstance(result, Pruned):
            break
        marks, dead, journals = marks + result.marks, dead + result.dead_letters, journals + result.journals
        if max(result.marks, result.dead_letters, result.journals) < policy.batch:
            break
    return Pruned(marks, dead, journals)


async def run_retention(
    committer: GroupCommitter, clock: Clock, policy: Retention, log: logging.Logger
) -> None:
    """Prune every ``policy.every`` until cancelled; a failed run is logged and retried next period."""
    while True:
        await clock.sleep(policy.every.total_seconds())
        try:
            done = await prune_once(committer, clock, policy)
        except StoreError as e:
            log.warning("retention: pruning failed (%s); trying again in %s", e, policy.every)
            continue
        if done.marks or done.dead_letters or done.journals:
            log.info(
                "retention: pruned %d processed marks, %d dead letters, %d journal steps",
                done.marks,
                done.dead_letters,
                done.journals,
            )
