"""The payment gateway the cart charges, and a deliberately flaky fake of it.

A gateway is anything with ``async charge(ctx, card, amount) -> payment id``; the
cart runs it as an activity (``self.run``), so ``ctx`` is the
:class:`actors.ActivityContext` of the attempt. A real gateway hands
``ctx.idempotency_key`` to its provider, so an attempt repeated after a lost
answer charges once: :class:`FakeGateway` behaves that way too.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import Protocol

import attrs

from actors import ActivityContext

DECLINED_CARD = "4000 0000 0000 0002"
"""The fake gateway declines this card (as card networks' test cards do)."""


class CardDeclined(Exception):
    """The card was refused: retrying cannot help (non-retryable)."""


class GatewayUnavailable(Exception):
    """The gateway did not answer (a 503): worth retrying."""


class PaymentGateway(Protocol):
    """What the cart needs of a payment provider."""

    async def charge(self, ctx: ActivityContext, card: str, amount: int) -> str:
        """Charge ``amount`` cents to ``card``; return the payment id."""
        ...


@attrs.frozen
class Attempt:
    """One call the fake gateway received."""

    at: dt.datetime
    attempt: int
    card: str
    amount: int
    outcome: str


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.define
class FakeGateway:
    """A payment gateway in memory that fails on purpose.

    Each charge fails its first ``fail_first`` attempts with GatewayUnavailable, then
    fails at random with probability ``failure_rate``; ``declined`` cards are refused
    with CardDeclined. A charge repeated with the same idempotency key returns the
    first payment id without charging again.
    """

    fail_first: int = 2
    failure_rate: float = 0.0
    declined: frozenset[str] = frozenset({DECLINED_CARD})
    now: Callable[[], dt.datetime] = _utcnow
    """Stamps the attempts (pass a VirtualClock's ``now``)."""
    seed: int = 0
    attempts: list[Attempt] = attrs.field(factory=list)
    """Every call, in order."""
    charges: dict[str, tuple[str, int]] = attrs.field(factory=dict)
    """Payment id and amount by idempotency key: what was really charged."""
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def charge(self, ctx: ActivityContext, card: str, amount: int) -> str:
        """Charge ``amount`` cents to ``card`` (see the class docstring for how it fails)."""
        done = self.charges.get(ctx.idempotency_key)
        if done is not None:
            return self._log(ctx, card, amount, f"already charged as {done[0]}", done[0])
        if card in self.declined:
            self._log(ctx, card, amount, "declined")
            raise CardDeclined(f"card {card} was declined")
        if ctx.attempt <= self.fail_first or self._rng.random() < self.failure_rate:
            self._log(ctx, card, amount, "503 unavailable")
            raise GatewayUnavailable("the payment gateway is unavailable (503)")
        payment = f"ch_{len(self.charges) + 1:04d}"
        self.charges[ctx.idempotency_key] = (payment, amount)
        return self._log(ctx, card, amount, f"charged as {payment}", payment)

    def _log(self, ctx: ActivityContext, card: str, amount: int, outcome: str, result: str = "") -> str:
        self.attempts.append(Attempt(self.now(), ctx.attempt, card, amount, outcome))
        return result
