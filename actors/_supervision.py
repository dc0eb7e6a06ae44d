"""Supervision, the acting half: the actor loop's named outcomes (:class:`Step`) and
the dead letter's commit. The decision itself is pure: ``actors._supervisor``. Internal.
"""

from __future__ import annotations

import enum
import traceback

import anyio

from actors import _outcome as outcome
from actors._envelope import Envelope
from actors._ids import safe_repr, safe_text
from actors._kernel import Kernel
from actors.errors import HandlerFailed, SignalTaken, StoreError
from persistence.store import Commit


class Step(enum.Enum):
    """How one phase of handling a signal ended (the actor loop's named outcomes)."""

    DONE = "done"
    """The signal is finished: committed, answered, dead-lettered or paused."""
    RETRY = "retry"
    """The handler crashed and runs again (its attempt counts up)."""
    STORE_FAILED = "store_failed"
    """The store failed; the signal is safe in the inbox: back off, then run it again."""
    TAKEN = "taken"
    """The commit found its keyed inbox signal gone (``SignalTaken``): processed already,
    by a run whose commit landed though its answer was lost. Its mark answers it: look
    for the mark again (at once, no backoff)."""


def failure_of(
    env: Envelope, entity_id: str, error: BaseException, attempts: int, code_bug: bool
) -> HandlerFailed:
    """The ``HandlerFailed`` a dead-lettered signal answers with."""
    h = env.handler
    where = f"{h.entity}/{entity_id}.{h.name}"
    what = "failed with a bug in the code (not retried)" if code_bug else f"failed {attempts} times"
    failure = HandlerFailed(
        f"{where} {what}, dead-lettered: {safe_repr(error, 500)}",
        handler=f"{h.entity}.{h.name}",
        attempts=attempts,
    )
    failure.__cause__ = error
    return failure


def after_taken(env: Envelope, error: SignalTaken) -> Step:
    """Where a run whose commit was refused with ``SignalTaken`` goes: a keyed signal is
    answered from its processed mark (``Step.TAKEN``); an unkeyed one is done, and a
    caller waiting on it gets the error."""
    if env.keyed:
        return Step.TAKEN
    if env.reply is not None:
        env.reply.fail(error)
    return Step.DONE


async def write_dead_letter(
    kernel: Kernel, env: Envelope, failure: HandlerFailed, error: BaseException, attempts: int, seq: int
) -> Step:
    """Commit ``env``'s signal as dead-lettered, then answer its caller with ``failure``."""
    s = env.signal
    try:
        tb = "".join(traceback.format_exception(error))
    except BaseException as e:  # a user's exception may break even this
        tb = f"(no traceback: formatting it failed with {type(e).__name__})"
    kernel.log.error(
        "%s; signal %s moved to dead letters",
        failure,
        s.signal_id,
        extra={
            "entity_type": s.entity_type,
            "entity_id": s.entity_id,
            "signal_id": s.signal_id,
            "attempt": attempts,
        },
    )
    text = outcome.encode_error("failed", failure)
    commit = Commit(
        s.entity_type,
        s.entity_id,
        s,
        text,
        seq + 1,
        (),
        recorded_at=kernel.clock.now().timestamp(),
        dead_letter=(safe_repr(error, 2000), safe_text(tb[-20000:], 20000), attempts),
        has_journal=True,
        mark=True,
        from_inbox=env.from_inbox,
    )
    try:
        with anyio.CancelScope(shield=True):
            await kernel.committer.submit(commit)
    except StoreError as e:
        if isinstance(e, SignalTaken):  # processed already (an earlier run landed): nothing to bury
            return after_taken(env, e)
        if env.from_inbox:
            return Step.STORE_FAILED
        if env.reply is not None:
            env.reply.fail(e)
        return Step.DONE
    kernel.outcomes.notify(s.signal_id, text, remote=env.recovered)
    if env.reply is not None:
        env.reply.fail(failure)
    return Step.DONE
