"""How a handler's outcome is stored, so a repeated signal id returns it again.

The stored form is JSON: ``{"ok": value}``, ``{"rejected": {"type", "message"}}``,
``{"failed": {"type", "message"}}``, ``{"cancelled": {...}}`` (cancelled through its
handle) or ``{"deadline": {...}}`` (a journaled ask that timed out). A rejection is
rebuilt as the same ``Rejected`` subclass when one of that name is loaded (found among
``Rejected``'s subclasses, never imported), else as ``Rejected`` itself.
"""

from __future__ import annotations

import json
from math import isfinite
from typing import Any

from actors._ids import safe_text
from actors.errors import Cancelled, CorruptRecord, DeadlineExceeded, HandlerFailed, Rejected
from persistence.codec import Codec, json_text


def encode_ok(codec: Codec, value: object, as_type: object, what: str) -> str:
    """Stored form of a successful result; SerializationError or PayloadTooLarge if it has
    none (``what`` names it there: "result of Account.deposit")."""
    t = type(value)
    if t is int:  # its repr is its JSON text (past 4,300 digits both raise ValueError)
        text = '{"ok":' + int.__repr__(value) + "}"
        if len(text) > codec.max_payload:  # ASCII: its length is its size
            codec.check_size(text, what)
        return text
    if t is str or t is bool or value is None or (t is float and isfinite(value)):  # type: ignore[arg-type]
        text = '{"ok":' + json_text(value) + "}"
        codec.check_size(text, what)
        return text
    return codec.dumps({"ok": codec.converter.unstructure(value, unstructure_as=as_type)}, what=what)


def error_message(exc: BaseException) -> str:
    """The message of an exception, never failing (a user's ``__str__`` may raise)."""
    message = getattr(exc, "message", None) if isinstance(exc, Rejected) else None
    if not isinstance(message, str):
        try:
            message = str(exc)
        except BaseException as e:  # a user's __str__ may raise anything
            message = f"<str() of {type(exc).__qualname__} failed: {type(e).__name__}>"
    return message


def encode_error(kind: str, exc: BaseException) -> str:
    """Stored form of a rejection (``kind="rejected"``), a failure (``"failed"``) or a
    journaled ask's deadline (``"deadline"``)."""
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return json.dumps({kind: {"type": name, "message": safe_text(error_message(exc), 2000)}})


def encode_cancelled(exc: Cancelled) -> str:
    """Stored form of a cancelled invocation's outcome."""
    return json.dumps(
        {
            "cancelled": {
                "type": "actors.errors.Cancelled",
                "message": safe_text(error_message(exc), 2000),
                "reason": safe_text(exc.reason, 2000),
            }
        }
    )


def _rejected_class(name: str) -> type[Rejected]:
    stack: list[type[Rejected]] = [Rejected]
    while stack:
        cls = stack.pop()
        if f"{cls.__module__}.{cls.__qualname__}" == name:
            return cls
        stack.extend(cls.__subclasses__())
    return Rejected


def _rejection(info: dict[str, Any]) -> Rejected:
    cls = _rejected_class(str(info["type"]))
    message = str(info["message"])
    try:
        exc = cls(message)
    except Exception:
        exc = Rejected(message)
    if getattr(exc, "message", None) != message:  # a subclass whose __init__ takes other arguments
        exc.message = message
    return exc


def decode(codec: Codec, text: str, as_type: object, *, where: str = "a stored outcome") -> Any:
    """Return the stored result, or raise the stored rejection or failure.

    A record that cannot be read raises ``CorruptRecord`` naming ``where``.
    """
    try:
        data = json.loads(text)
        kind = next(iter(data)) if isinstance(data, dict) and len(data) == 1 else None
        if kind == "ok":
            if as_type is type(None):  # ``-> None``: cattrs has no structure hook for NoneType
                return None
            return codec.converter.structure(data["ok"], as_type)  # type: ignore[arg-type]
        info = data[kind] if kind in ("rejected", "failed", "deadline", "cancelled") else None
        if not isinstance(info, dict):
            raise ValueError(f"not an outcome: {text[:80]!r}")
        error: Exception
        if kind == "rejected":
            error = _rejection(info)
        elif kind == "cancelled":
            error = Cancelled(str(info["message"]), reason=str(info.get("reason", "")))
        elif kind == "deadline":
            error = DeadlineExceeded(f"{info['message']} (recorded)")
        else:
            error = HandlerFailed(f"{info['message']} (first outcome of this signal id)")
    except Exception as e:
        raise CorruptRecord(f"{where} cannot be read: {e}") from e
    raise error
