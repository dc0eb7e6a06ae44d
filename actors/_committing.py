"""The commit of an invocation: its events, processed mark, timer changes, outbox
and journal in one write, then the answer to its caller (finish). Also the
checkpoint of a parking invocation (the same write, signal left unmarked). Internal."""

from __future__ import annotations

import anyio

from actors._actor import Actor
from actors._envelope import Envelope
from actors._invocation import Invocation
from actors._kernel import Kernel
from actors._parking import Parking
from actors._supervision import Step, after_taken
from actors.errors import ActorsError, SignalTaken, StoreError
from persistence.store import Commit, Committed, Journal, JournalEntry, Write


class Committing:
    """Commits the invocations of every actor of one system."""

    __slots__ = ("kernel", "parking")

    def __init__(self, kernel: Kernel, parking: Parking) -> None:
        self.kernel = kernel
        self.parking = parking

    async def commit(
        self,
        actor: Actor,
        env: Envelope,
        inv: Invocation,
        text: str,
        rejected: ActorsError | None,
        result: object,
    ) -> Step:
        """Commit ``inv`` with its outcome ``text``, then finish (answer the caller)."""
        kernel = self.kernel
        done: object = None
        commit = self.record(actor, env, inv, text)
        since = actor.incarnation
        if commit is not None:
            # a commit under way is finished and answered: pause() waits for it (this flag
            # costs less than a shielded cancel scope, on the path every message takes)
            actor.hold()
            try:  # the committer's future awaited here: one coroutine less per message
                slot = kernel.committer.enqueue(commit)
                if slot.done is not None:
                    await slot.done
                if slot.error is not None:
                    raise slot.error
                done = slot.result
            except StoreError as e:
                return self.not_written(actor, env, inv, e)
            finally:
                actor.release()  # a waiting pause takes effect at the next await: the answer goes first
        self.written(actor, env, inv, text, done, rejected, result, since)
        return Step.DONE

    def not_written(self, actor: Actor, env: Envelope, inv: Invocation, error: StoreError) -> Step:
        """The commit failed: back to what is stored; the caller gets the error, or an
        inbox signal (not acknowledged, safe in the inbox) runs again. An inbox signal
        that was no longer there (``SignalTaken``) was processed already, by an earlier
        run whose commit landed though its answer was lost, or by another member: this
        run's effects are dropped (the state is rebuilt from the store, which holds the
        first run's) and the signal is done, a keyed one once its mark has answered it
        (``Step.TAKEN``)."""
        actor.rollback()
        actor.deactivate()  # rebuild from what is really stored
        if isinstance(error, SignalTaken):
            actor.ended(inv, "duplicate", error)
            self.kernel.log.warning(
                "%r: %s was processed already; this run of it is dropped",
                actor,
                env.signal.handler,
                extra=actor.extra(env),
            )
            return after_taken(env, error)  # a keyed one: Loop.handle looks for its mark again
        actor.ended(inv, "crashed", error)
        if env.from_inbox:
            return Step.STORE_FAILED
        if env.reply is not None:
            env.reply.fail(error)
        return Step.DONE

    def written(
        self,
        actor: Actor,
        env: Envelope,
        inv: Invocation,
        text: str,
        done: object,
        rejected: ActorsError | None,
        result: object,
        since: int | None = None,
    ) -> None:
        """The commit is written (or there was nothing to write): finish and answer.

        The actor's state is the committed one, timers and outbox go on, the caller
        gets its answer, maybe a snapshot; then parked invocations are woken if their
        predicate now holds. (One method, not two: every message takes this path.)

        ``since``: the actor's incarnation when the commit was recorded. If its state
        was dropped and rebuilt from the store meanwhile (a parked run of it failed,
        and a query reloaded it before this commit landed), that state lacks this
        commit's events: it is not counted on it (that would put the sequence past the
        state, and a snapshot would store a state missing them); the actor is dropped
        again instead, and rebuilt from the store, which now holds the commit."""
        kernel = self.kernel
        stale = since is not None and since != actor.incarnation
        if not stale:
            actor.seq += len(inv.events)  # the state is the committed one
            actor.backup = None
        if inv.timers or inv.cancels:
            kernel.timers.on_commit(actor.spec.name, actor.id, inv.timers.values(), inv.cancels)
        if inv.outbox and isinstance(done, Committed):
            kernel.route.deliver_outbox(done.outbox_ids, inv.outbox)
        if kernel.observer.active:
            actor.ended(inv, "rejected" if rejected is not None else "ok", rejected)
        if env.reply is not None:
            if rejected is not None:
                env.reply.fail(rejected)
            else:
                env.reply.set(result)
        every = actor.spec.snapshot_every
        if stale:
            actor.deactivate()
        elif every and actor.seq - actor.snap_seq >= every:  # the check of maybe_snapshot()
            actor.maybe_snapshot()
        if env.keyed:
            kernel.outcomes.notify(env.signal.signal_id, text, remote=env.recovered)
        if actor.runs and not stale:  # most actors have nothing parked
            self.parking.check(actor)

    def record(self, actor: Actor, env: Envelope, inv: Invocation, text: str) -> Commit | None:
        """The write that commits ``inv`` with its outcome ``text`` (None: nothing to
        write, an unkeyed signal that changed nothing and came from no inbox)."""
        if not (inv.events or env.keyed or env.from_inbox or inv.dirty):
            return None
        s = env.signal
        return Commit(  # positional (in field order): the path every message takes
            s.entity_type,
            s.entity_id,
            s,
            text,
            actor.seq + 1,
            inv.events,
            self.kernel.wall(),  # recorded_at
            None,  # dead_letter
            tuple(inv.timers.values()) if inv.timers else (),  # set_timers: most runs set none
            tuple(inv.cancels) if inv.cancels else (),  # cancel_timers
            tuple(inv.outbox) if inv.outbox else (),  # outbox
            inv.has_journal,
            env.keyed,  # mark
            env.from_inbox,
        )

    async def checkpoint(self, actor: Actor, inv: Invocation, entries: list[JournalEntry]) -> None:
        """Commit what ``inv`` did so far (events, timers, outbox) with ``entries`` of its
        journal, in one transaction; its signal stays in the inbox, unmarked."""
        kernel, env = self.kernel, inv.env
        s = env.signal
        writes: list[Write] = []
        commit = Commit(
            s.entity_type,
            s.entity_id,
            s,
            "",
            actor.seq + 1,
            inv.events,
            recorded_at=kernel.wall(),
            set_timers=tuple(inv.timers.values()) if inv.timers else (),  # most runs set none
            cancel_timers=tuple(inv.cancels) if inv.cancels else (),
            outbox=tuple(inv.outbox) if inv.outbox else (),
            has_journal=False,
            mark=False,
            from_inbox=False,
        )
        writes.append(commit)
        for i, e in enumerate(entries):
            writes.append(Journal(e, s if i == 0 and not env.from_inbox else None))
        since = actor.incarnation
        with anyio.CancelScope(shield=True):
            results = await kernel.committer.submit_group(writes)
        env.from_inbox = True
        inv.journal.has_journal = True
        done = results[0]
        stale = since != actor.incarnation  # rebuilt meanwhile: see written()
        if not stale:
            actor.seq += len(inv.events)
            actor.backup = None
        if inv.timers or inv.cancels:
            kernel.timers.on_commit(actor.spec.name, actor.id, inv.timers.values(), inv.cancels)
        if inv.outbox and isinstance(done, Committed):
            kernel.route.deliver_outbox(done.outbox_ids, list(inv.outbox))
        inv.drop_effects()
        if stale:
            actor.deactivate()
        else:
            actor.maybe_snapshot()
            self.parking.check(actor)
