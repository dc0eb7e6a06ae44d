"""Keyed repeats: a keyed signal whose key was handled before is answered from its
processed mark (or refused when its arguments differ), never run twice. Internal."""

from __future__ import annotations

import anyio

from actors import _outcome as outcome
from actors._actor import Actor
from actors._envelope import Envelope
from actors._ids import conflict_error
from actors._kernel import Kernel
from actors._marks import MarkReads
from actors.errors import SignalTaken, StoreError
from persistence.store import Commit, ProcessedMark


class Repeats:
    """Finds and answers the repeats of keyed signals, for every actor of one system."""

    __slots__ = ("kernel", "marks")

    def __init__(self, kernel: Kernel, marks: MarkReads) -> None:
        self.kernel = kernel
        self.marks = marks
        """Mark reads of one turn of the event loop, in one store read."""

    def tell_conflict(self, actor: Actor, env: Envelope) -> bool:
        """A keyed ask whose key a tell with other arguments is using: refuse the ask."""
        told = None if env.from_inbox else actor.telling.get(env.signal.signal_id)
        if told is None or told == env.signal.fingerprint:
            return False
        if env.reply is not None:
            env.reply.fail(conflict_error(env.signal))
        return True

    async def answer(self, actor: Actor, env: Envelope) -> bool:
        """Whether ``env`` is a repeat (it has a processed mark); if so, answer it from
        the mark (or with IdempotencyConflict) and take an inbox copy out."""
        s = env.signal
        mark = await self.marks.read((s.entity_type, s.entity_id, s.signal_id))
        if mark is None:
            return False
        if env.from_inbox:  # a repeat that reached the inbox (tell vs. a running ask): take it out
            await self._drop(actor, env, mark.outcome, mark.fingerprint != s.fingerprint)
        self.reply_from(env, mark)
        return True

    def reply_from(self, env: Envelope, mark: ProcessedMark) -> None:
        """Answer the caller of a repeat from its mark: its outcome, or IdempotencyConflict
        when the arguments differ."""
        if env.reply is None:
            return
        s = env.signal
        if mark.fingerprint != s.fingerprint:
            env.reply.fail(conflict_error(s))
            return
        where = f"the processed mark of signal {s.signal_id!r} of {s.entity_type}/{s.entity_id}"
        try:
            env.reply.set(outcome.decode(self.kernel.codec, mark.outcome, env.handler.returns, where=where))
        except Exception as e:
            env.reply.fail(e)

    async def _drop(self, actor: Actor, env: Envelope, first_outcome: str, conflict: bool) -> None:
        s, kernel = env.signal, self.kernel
        if conflict:
            kernel.log.warning(
                "dropping inbox signal %s of %r: %s",
                s.signal_id,
                actor,
                conflict_error(s),
                extra=actor.extra(env),
            )
        drop = Commit(
            s.entity_type,
            s.entity_id,
            s,
            first_outcome,
            actor.seq + 1,
            recorded_at=kernel.clock.now().timestamp(),
            mark=False,
            from_inbox=True,
        )
        actor.hold()
        try:
            with anyio.CancelScope(shield=True):
                await kernel.committer.submit(drop)
        except SignalTaken:  # dropped already (an earlier drop landed, or another member's)
            pass
        except StoreError as e:  # it stays in the inbox and is answered by its mark next time
            kernel.log.warning(
                "could not drop repeated signal %s of %r: %s", s.signal_id, actor, e, extra=actor.extra(env)
            )
        finally:
            actor.release()
