"""A crashed run: carry out the supervisor's decision (retry after a delay, dead
letter, or stop the actor by its restart intensity and resume it after the
cool-down). The decision itself is pure: ``actors._supervisor``. Internal."""

from __future__ import annotations

from actors._actor import Actor
from actors._envelope import Envelope
from actors._ids import safe_repr
from actors._invocation import Invocation
from actors._kernel import Kernel
from actors._supervision import Step, failure_of, write_dead_letter
from actors._supervisor import DeadLetter, Retry, Stop


class Restarts:
    """Acts on the supervisor's decisions for every actor of one system."""

    __slots__ = ("kernel",)

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def crashed(
        self, actor: Actor, env: Envelope, inv: Invocation, error: BaseException, attempt: int
    ) -> Step:
        """Carry out the supervisor's decision on a crashed run (the one place that asks it)."""
        kernel = self.kernel
        actor.rollback()
        actor.deactivate()
        decision = kernel.supervisor.decide(error, attempt, actor.crashes, kernel.clock.monotonic())
        if isinstance(decision, Stop):
            actor.ended(inv, "crashed", error)
            self.stop(actor, env, decision.crashes)
            return Step.DONE
        if isinstance(decision, DeadLetter):
            actor.ended(inv, "dead_lettered", error)
            failure = failure_of(env, actor.id, error, attempt, decision.code_bug)
            if kernel.observer.active:
                kernel.observer.dead_lettered(inv.info, error)
            kernel.dead_letters += 1
            actor.hold()  # the dead letter is written and answered, even if the system closes
            try:
                return await write_dead_letter(kernel, env, failure, error, attempt, actor.seq)
            finally:
                actor.release()
        assert isinstance(decision, Retry)
        actor.ended(inv, "crashed", error)
        kernel.retries += 1
        if kernel.observer.active:
            kernel.observer.retry_scheduled(inv.info, decision.delay, error)
        kernel.log.warning(
            "%s/%s.%s crashed (attempt %d of %d): %s; retrying in %.3fs",
            actor.spec.name,
            actor.id,
            env.handler.name,
            attempt,
            kernel.supervision.max_attempts,
            safe_repr(error, 500),
            decision.delay,
            extra=actor.extra(env, attempt),
        )
        async with kernel.work.parked():
            await kernel.clock.sleep(decision.delay)
        return Step.RETRY

    def stop(self, actor: Actor, env: Envelope, crashes: int) -> None:
        """Stop ``actor`` until its cool-down ends: its asks fail, inbox signals are held."""
        kernel, policy = self.kernel, self.kernel.supervision
        actor.stopped_until = kernel.clock.now() + policy.within  # for people: when it resumes
        kernel.log.error(
            "%s/%s stopped: %d crashes within %s exceed its restart intensity (max %d); "
            "its asks fail, its inbox keeps its signals, it resumes at %s",
            actor.spec.name,
            actor.id,
            crashes,
            policy.within,
            policy.max_restarts,
            actor.stopped_until.isoformat(),
            extra=actor.extra(env),
        )
        queued = [env, *actor.mailbox]
        actor.mailbox.clear()
        for e in queued:
            actor.deliver(e)  # stopped now: asks fail, inbox signals are held
        kernel.tasks.spawn(lambda: self._resume_later(actor))

    async def _resume_later(self, actor: Actor) -> None:
        kernel = self.kernel
        assert actor.stopped_until is not None
        # a task of its own, not counted busy while it waits (so not parked()); busy while it resumes
        await kernel.clock.sleep(kernel.supervision.within.total_seconds())
        kernel.work.inc()
        try:
            actor.stopped_until = None
            actor.crashes.clear()
            kernel.log.info("%s/%s resumes after its cool-down", actor.spec.name, actor.id)
            # the held signals, not a re-read of the inbox: a tell accepted during such a
            # read would be routed twice (live and from the read)
            held, actor.held = actor.held, []
            for env in held:
                actor.deliver(env)
        finally:
            kernel.work.dec()
