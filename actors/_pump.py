"""The synchronous path of a message: a plain handler of an active actor runs in a
callback of the event loop, not in a task, and its commit calls the actor back.

Most messages need nothing that waits but their commit: the actor is loaded, the
handler is a plain function, the signal carries no key (no repeat to look up). For
those a drain task per burst of messages, a coroutine per phase and a future per
commit are pure cost (about a fifth of W1 at 512 in flight). :class:`Pump` runs
them one after another in a callback; when a commit has to wait for the group
commit, the committer hands the written slot back (``Slot.then``) and the next
message runs from there. Anything else (an async handler, a key, an actor to load,
a handler that raised, a commit that failed) is handed to the drain task of
``actors._loop``, which goes on from exactly that point. Internal.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
from collections.abc import Callable, Coroutine
from typing import Any

from actors import _outcome as outcome
from actors._actor import Actor
from actors._commit import Slot
from actors._committing import Committing
from actors._entity import Entity
from actors._envelope import Envelope, closed_error
from actors._invocation import Invocation
from actors._kernel import Kernel
from actors._repeats import Repeats
from actors._spec import IMMUTABLE_VALUES
from actors._supervision import Step
from actors.errors import DefinitionError, StoreError
from persistence.codec import short_repr
from persistence.store import Commit, ProcessedMark

BURST = 64
"""Messages one actor runs in one turn of the event loop at most."""

SLICE = 256
"""Actors one turn of the event loop runs at most; the rest run in the next. Between the
two the committer takes what the first ones committed, and a store that writes on a
thread of its own (SQLite) writes it while the rest run here."""

First = Step | tuple[Invocation, BaseException]
"""Where a drain task takes a message over: after a failed commit (``Step``), or after
the handler raised (the invocation and the error)."""

Drain = Callable[[Actor, "tuple[Envelope, First] | None"], Coroutine[Any, Any, None]]
"""Starts the drain of an actor, optionally going on with one message first."""


def _same(a: object, b: object) -> bool:
    return a is b or a == b


def check_state(actor: Actor, inv: Invocation, entity: Entity) -> None:
    """Refuse a handler that changed fields other than through its events (an entity
    with mutable fields: its backup is a copy)."""
    backup = actor.backup
    assert backup is not None
    assert not isinstance(backup, tuple)
    spec = actor.spec
    expected = spec.clone(backup)
    for event in inv.applied:
        spec.appliers[type(event)](expected, event)
    changed = [f for f in spec.field_names if not _same(getattr(expected, f), getattr(entity, f))]
    if changed:
        raise DefinitionError(
            f"{spec.name}.{inv.env.handler.name} changed {', '.join(changed)} without an event: "
            "fields change only in @applies methods (emit an event)"
        )


def arguments(kernel: Kernel, env: Envelope) -> dict[str, object]:
    """The handler's arguments: decoded from what was stored (neither its caller nor an
    earlier attempt can change them), unless they are immutable values."""
    h = env.handler
    values = env.values
    if values is not None and h.immutable_args:
        env.values = None  # not kept while the commit runs (a later attempt decodes its own)
        return values
    return h.decode(kernel.codec, env.signal.args)


def returned(kernel: Kernel, actor: Actor, inv: Invocation, result: object) -> tuple[str, object]:
    """The handler of ``inv`` returned ``result``: check it finished and changed fields
    only through events; its outcome text (encoded, checked and sized as a repeat
    returns it) and the result to hand out (a copy, so no caller holds live state)."""
    rp = inv.replay
    if rp is not None and rp.replaying:
        inv.check_finished()  # raises: the handler ended inside its committed segments
    spec = actor.spec
    if not spec.shallow_copy:
        assert inv.target is not None
        check_state(actor, inv, inv.target)
    h = inv.env.handler
    text = outcome.encode_ok(kernel.codec, result, h.returns, h.result_what)
    if type(result) not in IMMUTABLE_VALUES:
        result = copy.deepcopy(result)
    return text, result


def internal_error(kernel: Kernel, actor: Actor, env: Envelope, e: Exception) -> None:
    """A bug in the runtime while handling ``env``: keep the system alive, say so, and
    answer its caller; the actor is rebuilt from the store."""
    kernel.log.exception("%r: internal error handling %s", actor, env.signal.handler, extra=actor.extra(env))
    actor.deactivate()
    if env.reply is not None:
        env.reply.fail(e)


class _Pumped(Slot):
    """The commit of a pumped message: the slot carries what finishing it needs, and
    the committer calls it back (``then``) once it is written, or failed."""

    __slots__ = ("incarnation", "inv", "pump", "text", "value")

    def __init__(self, write: Commit, pump: Pump, inv: Invocation, text: str, value: object) -> None:
        # Slot's fields set here (no super() call: every message makes one)
        self.write = write
        self.after = self.done = self.result = self.error = None
        self.tries = 0
        self.then = _after_commit
        self.pump = pump
        self.inv = inv
        self.text = text
        self.value = value
        self.incarnation = inv.actor.incarnation  # type: ignore[attr-defined]  # (an Actor: see _one)


def _after_commit(slot: Slot) -> None:
    """A pumped message's commit is written (or failed): finish the message, go on
    with the actor."""
    pumped: _Pumped = slot  # type: ignore[assignment]  # only a _Pumped slot is given this
    pump, inv = pumped.pump, pumped.inv
    actor: Actor = inv.actor  # type: ignore[assignment]  # (no cast() call: every message comes here)
    if actor.pause_pending:  # a pause waits for this commit: release() lets it take effect
        actor.release()
    else:
        actor.committing -= 1  # release(), inline: every message comes here
    try:
        if slot.error is None:  # written (settle's first case, inline: most commits)
            env = inv.env
            pump.commits.written(
                actor, env, inv, pumped.text, slot.result, None, pumped.value, pumped.incarnation
            )
            actor.handled(env)
        elif not pump.settle(pumped):
            return  # a drain task took over
    except Exception as e:  # a bug in the runtime: keep the system alive, say so
        pump.internal_error(actor, inv.env, e)
    if actor.mailbox:
        pump.run(actor)
    else:
        pump.end(actor)


class Pump:
    """Runs the plain messages of every actor of one system without a task."""

    __slots__ = ("_keyed", "_ready", "_tasks", "commits", "drain", "kernel", "repeats")

    def __init__(self, kernel: Kernel, commits: Committing, drain: Drain, repeats: Repeats) -> None:
        self.kernel = kernel
        self._tasks = kernel.tasks
        self.commits = commits
        self.drain = drain
        self.repeats = repeats
        self._keyed = repeats.marks.gathers()
        """Keyed asks run here too: their marks are read many at a time, with a callback."""
        self._ready: list[Actor] = []
        """Actors to run in the next turn of the event loop (one callback for them all)."""

    def takes(self, actor: Actor, env: Envelope) -> bool:
        """Whether ``env`` can run here next: a plain handler of a loaded actor, no key
        or the key of an outside ask or of an inbox signal (its mark read first, with a
        callback), the system running, the actor not stopped."""
        return (
            actor.entity is not None
            and (not env.keyed or (self._keyed and (env.reply is not None or env.from_inbox)))
            and not env.handler.is_async
            and not actor.resumable
            and actor.stopped_until is None
            and self._tasks.running
        )

    def start(self, actor: Actor) -> bool:
        """Handle ``actor``'s mailbox from the next turn of the event loop if its first
        message can run here (``running`` is set and its unit of work counted by the
        caller); False if not (a drain task is for it)."""
        if not self.takes(actor, actor.mailbox[0]):
            return False
        self.kernel.tasks.pumping += 1
        ready = self._ready
        ready.append(actor)
        if len(ready) == 1:  # the first of this turn: one callback runs them all
            self._tasks.loop.call_soon(self._run_ready)
        return True

    def _later(self, actor: Actor) -> None:
        self._ready.append(actor)
        if len(self._ready) == 1:
            self._tasks.loop.call_soon(self._run_ready)

    def _run_ready(self) -> None:
        ready, self._ready = self._ready, []
        for actor in ready[:SLICE]:
            try:
                self.run(actor)
            except Exception:  # a bug in the runtime: the other actors still run
                self.kernel.log.exception("%r: internal error in the pump", actor)
        if len(ready) > SLICE:  # the rest next turn, first in line
            scheduled = bool(self._ready)  # kicked meanwhile: a callback is already asked for
            self._ready = ready[SLICE:] + self._ready
            if not scheduled:
                self._tasks.loop.call_soon(self._run_ready)

    def run(self, actor: Actor) -> None:
        """Handle messages until one must wait for its commit, the mailbox is empty, or
        the next one needs the drain task. After ``BURST`` messages written at once
        (nothing else runs, so each commit is written by its caller) the rest waits
        for the next turn of the event loop: one actor's long mailbox does not keep
        everything else (timers, queries, the network) waiting."""
        budget = BURST
        tasks = self._tasks
        while actor.mailbox:
            env = actor.mailbox[0]
            if not (  # takes(), inline: every message comes here
                actor.entity is not None
                and (not env.keyed or (self._keyed and (env.reply is not None or env.from_inbox)))
                and not env.handler.is_async
                and not actor.resumable
                and actor.stopped_until is None
                and tasks.running
            ):
                break
            if not budget:
                self._later(actor)
                return
            budget -= 1
            if env.keyed and actor.checked is not env:  # a repeat? its mark first
                if not self._check(actor, env):
                    return  # read later (_after_read goes on), or a drain task took over
                continue  # a repeat answered from its mark (or refused), or checked: runs next
            actor.checked = None
            actor.mailbox.popleft()
            try:  # in a context of its own: what the handler (or an observer) sets there
                # stays there, not in the committer's task whose callback may run it
                finished = contextvars.copy_context().run(Pump._one, self, actor, env)  # no bound method made
            except Exception as e:  # a bug in the runtime: keep the system alive, say so
                self.internal_error(actor, env, e)
                continue
            if not finished:
                return  # its commit calls back (_after_commit), or a drain task took over
        self.end(actor)

    def _check(self, actor: Actor, env: Envelope) -> bool:
        """Look for the mark of keyed ``env`` (at the head of the mailbox). True if that is
        settled here (``env`` was a repeat and is answered, or has no mark and is marked
        ``checked`` to run next); False if the read goes on (:meth:`_after_read`) or a
        drain task took the actor over (:meth:`_read`)."""
        s = env.signal
        if self.repeats.tell_conflict(actor, env):
            actor.mailbox.popleft()
            actor.handled(env)
            return True
        fut = self.repeats.marks.future((s.entity_type, s.entity_id, s.signal_id))
        if fut is None:  # closing: nothing of it was written, its caller is told so
            actor.mailbox.popleft()
            if env.reply is not None:
                env.reply.fail(closed_error(env))
            actor.handled(env)
            return True
        if fut.done():
            return self._read(actor, env, fut)
        fut.add_done_callback(lambda f: self._after_read(actor, env, f))
        return False

    def _read(self, actor: Actor, env: Envelope, fut: asyncio.Future[ProcessedMark | None]) -> bool:
        """The mark read of ``env`` is done: let it run next, or answer a repeat (or a
        failed read) of an ask here; True to go on here. An inbox signal that is not
        simply new (a repeat to take out of the inbox, a failed read to retry after a
        backoff, a close) goes to a drain task from the start, which does all that as
        for any inbox signal: False then."""
        error = None if fut.cancelled() else fut.exception()
        if error is None and not fut.cancelled() and fut.result() is None:
            actor.checked = env
            return True
        if env.from_inbox:  # still at the head of the mailbox: the drain task takes it from there
            self.end(actor)
            return False
        actor.mailbox.popleft()
        if env.reply is not None:
            if fut.cancelled():
                env.reply.fail(closed_error(env))
            elif error is not None:
                env.reply.fail(
                    error if isinstance(error, StoreError) else StoreError(f"mark read: {short_repr(error)}")
                )
            else:
                mark = fut.result()
                assert mark is not None
                self.repeats.reply_from(env, mark)
        actor.handled(env)
        return True

    def _after_read(self, actor: Actor, env: Envelope, fut: asyncio.Future[ProcessedMark | None]) -> None:
        """A mark read that waited is done: go on with the actor in the next turn's slices
        (unless a close failed its queued asks meanwhile: then it ends here). Not here and
        now: one read answers a whole turn's keys, and running them all at once would make
        one wave (one batch written while nothing runs, then nothing written while all
        run) where slices keep the writer busy beside the loop."""
        if not actor.mailbox or actor.mailbox[0] is not env:
            self.end(actor)
            return
        try:
            if not self._read(actor, env, fut):
                return  # a drain task took the actor over
        except Exception as e:  # a bug in the runtime: keep the system alive, say so
            if actor.mailbox and actor.mailbox[0] is env:
                actor.mailbox.popleft()
            self.internal_error(actor, env, e)
        self._later(actor)

    def _one(self, actor: Actor, env: Envelope) -> bool:
        """Run one message; False if it is not finished yet (its commit calls back, or a
        drain task goes on with it)."""
        kernel = self.kernel
        entity = actor.entity
        assert entity is not None
        h = env.handler
        spec = actor.spec
        inv = Invocation(actor, env, 1)
        inv.target = entity
        obs = kernel.observer
        if obs.active:
            inv.token = obs.invocation_started(inv.info)
        if not spec.shallow_copy and actor.backup is None:
            actor.before_first_emit()  # in-place edits of mutable fields become detectable
        object.__setattr__(entity, "_actors_ctx", inv)
        try:
            text, result = returned(kernel, actor, inv, h.call(entity, arguments(kernel, env)))
        except BaseException as e:  # the drain task decides what it means (Loop.failed)
            self._hand_over(actor, env, (inv, e))
            return False
        finally:
            object.__setattr__(entity, "_actors_ctx", None)
        write = self.commits.record(actor, env, inv, text)
        if write is None:
            self.commits.written(actor, env, inv, text, None, None, result)
            actor.handled(env)
            return True
        pumped = _Pumped(write, self, inv, text, result)
        kernel.committer.enqueue_slot(pumped)
        if pumped.then is not None:  # the commit is under way: a pause waits for it (and its answer)
            actor.committing += 1  # actor.hold(), inline
            return False
        return self.settle(pumped)  # written at once (or refused)

    def settle(self, pumped: _Pumped) -> bool:
        """Finish a pumped message after its write; False if a drain task took it over."""
        inv = pumped.inv
        actor = inv.actor
        assert isinstance(actor, Actor)
        env = inv.env
        error = pumped.error
        if error is None:
            self.commits.written(
                actor, env, inv, pumped.text, pumped.result, None, pumped.value, pumped.incarnation
            )
        elif isinstance(error, StoreError):
            step = self.commits.not_written(actor, env, inv, error)
            if step is not Step.DONE:  # STORE_FAILED: backs off, runs it again; TAKEN: its mark answers
                self._hand_over(actor, env, step)
                return False
        else:  # the committer closed before the write (SystemClosed): nothing was written
            actor.rollback()
            actor.deactivate()
            if env.reply is not None:
                env.reply.fail(error)
        actor.handled(env)
        return True

    def internal_error(self, actor: Actor, env: Envelope, e: Exception) -> None:
        """A bug in the runtime while running ``env`` (see the function of that name)."""
        internal_error(self.kernel, actor, env, e)
        actor.handled(env)

    def _hand_over(self, actor: Actor, env: Envelope, first: First) -> None:
        """A drain task goes on with ``env`` from ``first``, then with the mailbox."""
        tasks = self.kernel.tasks
        task = tasks.spawn_drain(self.drain(actor, (env, first)))
        if task is None:  # closing: nothing of it is kept, its caller is told so
            actor.rollback()
            actor.deactivate()
            if env.reply is not None:
                env.reply.fail(closed_error(env))
            actor.handled(env)
            self.end(actor)
            return
        tasks.pumping -= 1
        actor.task = task

    def end(self, actor: Actor) -> None:
        """No more messages to run here: a drain task goes on if one needs it, else the
        actor is idle again."""
        kernel = self.kernel
        kernel.tasks.pumping -= 1
        actor.checked = None
        if (actor.mailbox or actor.resumable) and kernel.tasks.live:
            task = kernel.tasks.spawn_drain(self.drain(actor, None))
            if task is not None:
                actor.task = task
                return
        actor.drained()
        actor.task = None
        actor.running = False
        actor.last_active = kernel.wall()  # no datetime made per message
        work = kernel.work
        work.busy -= 1  # Work.dec inline, unless it reaches zero
        if work.busy <= 0:
            work.busy += 1
            work.dec()
