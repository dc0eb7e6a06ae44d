"""Signal ids: how every id the runtime stores is made, so no two can collide.

A stored signal id is a one-letter namespace, a colon, and a body:

- ``k:<key>``   an idempotency key given by a caller outside the system;
- ``g:<...>``   a generated id (a call without a key; never repeats);
- ``i:[...]``   a key given inside a handler, scoped to the entity whose handler
                gave it: ``self.ref(...).options(key=...)``;
- ``o:[...]``   an outbox message; ``a:[...]`` a journaled ask; ``t:[...]`` a timer
                firing;
- ``s:[type, id, ...]`` a started invocation (``ref.start``): its handle's id, which
                names its entity so ``system.handle(id)`` can find its outcome.

Derived bodies are JSON arrays of their parts, which is injective: two different
tuples of parts never give one id, whatever characters ids and keys contain. A
caller outside can only make ``k:`` ids, so it can never forge an internal one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import uuid

from actors.errors import IdempotencyConflict, InvalidArguments
from persistence.codec import short_repr
from persistence.store import SignalRecord

_BOOT = ""
_counter = itertools.count()


def _new_prefix() -> None:
    """A new random prefix and counter for generated ids: at import, and in a process
    forked from this one (which would otherwise go on with this process's ids)."""
    global _BOOT, _counter
    _BOOT = uuid.uuid4().hex[:16]
    _counter = itertools.count()


_new_prefix()
if hasattr(os, "register_at_fork"):  # POSIX; where there is no fork there is nothing to do
    os.register_at_fork(after_in_child=_new_prefix)
_encode_parts = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def generated_id() -> str:
    """A fresh signal id for a call without an idempotency key (unique across processes)."""
    return f"g:{_BOOT}{next(_counter):x}"


def keyed_id(key: str) -> str:
    """The stored signal id of a caller's idempotency key."""
    return "k:" + key


def derived_id(kind: str, *parts: str | int) -> str:
    """An internal id of namespace ``kind`` made injectively from ``parts``."""
    return f"{kind}:{_encode_parts(parts)}"


def start_id(entity_type: str, entity_id: str, *unique: str | int) -> str:
    """The signal id of a started invocation (its handle's id)."""
    return derived_id("s", entity_type, entity_id, *unique)


def parse_start_id(handle_id: object) -> tuple[str, str]:
    """The entity (type, id) a handle id names; InvalidArguments if it is no handle id."""
    if isinstance(handle_id, str) and handle_id.startswith("s:") and len(handle_id) < 4096:
        try:
            parts = json.loads(handle_id[2:])
        except ValueError:
            parts = None
        if (
            isinstance(parts, list)
            and len(parts) >= 3
            and isinstance(parts[0], str)
            and isinstance(parts[1], str)
        ):
            return parts[0], parts[1]
    raise InvalidArguments(f"not an invocation handle id: {handle_id!r:.100}")


def internal_key_id(entity_type: str, entity_id: str, key: str) -> str:
    """The id of a key given inside a handler of entity (``entity_type``, ``entity_id``)."""
    return derived_id("i", entity_type, entity_id, key)


def caller_key(signal_id: str) -> str:
    """The key a caller gave, back from its stored id (the id itself if it has none)."""
    if signal_id.startswith("k:"):
        return signal_id[2:]
    if signal_id.startswith("i:"):
        parts = json.loads(signal_id[2:])
        return str(parts[-1])
    return signal_id


def is_keyed(signal_id: str) -> bool:
    """Whether a stored signal id can repeat (anything but a generated id)."""
    return not signal_id.startswith("g:")


def digest(*parts: str | int) -> str:
    """A short stable digest of ``parts`` (for keys handed to the outside world)."""
    return hashlib.sha256(_encode_parts(parts).encode()).hexdigest()[:40]


def check_text(value: object, what: str, *, max_length: int) -> str:
    """``value`` if it is a usable id or key: a str of 1 to ``max_length`` characters,
    without NUL, that has a UTF-8 form (no lone surrogates); InvalidArguments otherwise."""
    if not isinstance(value, str):
        raise InvalidArguments(f"{what} must be a str, got {type(value).__name__}")
    if not value or len(value) > max_length or "\x00" in value:
        raise InvalidArguments(f"{what} must be 1 to {max_length} characters without NUL, got {value!r:.80}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidArguments(
                f"{what} {value!r:.80} has no UTF-8 form (a lone surrogate); it cannot be stored"
            ) from None
    return value


def safe_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters and made storable (lone surrogates escaped)."""
    text = text[:limit]
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def safe_repr(value: object, limit: int = 2000) -> str:
    """``repr(value)``, or a description when its ``__repr__`` fails; always storable."""
    return safe_text(short_repr(value, limit), limit)


def conflict_error(s: SignalRecord) -> IdempotencyConflict:
    """The error of a key reused with other arguments or another handler (names the caller's key)."""
    return IdempotencyConflict(
        f"idempotency key {s.signal_id!r} of {s.entity_type}/{s.entity_id} was already used "
        f"with other arguments or another handler (now: {s.handler})",
        key=caller_key(s.signal_id),
    )
