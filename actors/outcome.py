"""How a handler's outcome is stored, so a repeated signal id returns it again.

The stored form is JSON: ``{"ok": value}``, ``{"rejected": {"type", "message"}}`` or
``{"failed": {"type", "message"}}``. A rejection is rebuilt as the same ``Rejected``
subclass when one of that name is loaded (found among ``Rejected``'s subclasses,
never imported), else as ``Rejected`` itself.
"""

from __future__ import annotations

import json
from typing import Any

from actors.errors import HandlerFailed, Rejected
from persistence.codec import Codec

_PLAIN = (int, str, float, bool, type(None))


def encode_ok(codec: Codec, value: object, as_type: object, what: str) -> str:
    """Stored form of a successful result."""
    if type(value) in _PLAIN and value == value and value not in (float("inf"), float("-inf")):
        return '{"ok":' + json.dumps(value, ensure_ascii=False) + "}"
    return codec.dumps(
        {"ok": codec.converter.unstructure(value, unstructure_as=as_type)}, what=f"result of {what}"
    )


def encode_error(kind: str, exc: BaseException) -> str:
    """Stored form of a rejection (``kind="rejected"``) or a failure (``"failed"``)."""
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    message = exc.message if isinstance(exc, Rejected) else str(exc)
    return json.dumps({kind: {"type": name, "message": message[:2000]}})


def _rejected_class(name: str) -> type[Rejected]:
    stack: list[type[Rejected]] = [Rejected]
    while stack:
        cls = stack.pop()
        if f"{cls.__module__}.{cls.__qualname__}" == name:
            return cls
        stack.extend(cls.__subclasses__())
    return Rejected


def decode(codec: Codec, text: str, as_type: object) -> Any:
    """Return the stored result, or raise the stored rejection or failure."""
    data = json.loads(text)
    if "ok" in data:
        if as_type is type(None):  # ``-> None``: cattrs has no structure hook for NoneType
            return None
        return codec.converter.structure(data["ok"], as_type)  # type: ignore[arg-type]
    if "rejected" in data:
        info = data["rejected"]
        cls = _rejected_class(info["type"])
        try:
            exc = cls(info["message"])
        except Exception:
            exc = Rejected(info["message"])
        raise exc
    info = data["failed"]
    raise HandlerFailed(f"{info['message']} (first outcome of this signal id)")
