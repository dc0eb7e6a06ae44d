"""Codec choice, measured: stdlib json (+ cattrs) against orjson and msgspec, per call.

python -m bench.codec        # needs orjson and msgspec (pip install orjson msgspec)
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable

import attrs
import msgspec
import orjson

from actors import event_type
from persistence.codec import Codec


@event_type("bench.deposited")
@attrs.frozen
class Deposited:
    amount: int
    note: str


codec = Codec()
codec.register_event(Deposited)
ev = Deposited(5, "salary")
raw = {"amount": 5, "note": "salary"}
enc = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
N = 200_000


def t(label: str, fn: Callable[[], object]) -> None:
    s = timeit.timeit(fn, number=N) / N * 1e6
    print(f"{label:55s} {s:6.2f} us")


t("codec.encode_event (cattrs unstructure + json)", lambda: codec.encode_event(ev))
t("cattrs unstructure only", lambda: codec.converter.unstructure(ev))
t("json encode of the dict", lambda: enc(raw))
t("orjson.dumps of the dict (+decode to str)", lambda: orjson.dumps(raw).decode())
t("msgspec.json.encode of the attrs instance (+decode)", lambda: msgspec.json.encode(ev).decode())
text = enc(raw)
t("json.loads", lambda: json.loads(text))
t("orjson.loads", lambda: orjson.loads(text))
t("cattrs structure from dict", lambda: codec.converter.structure(raw, Deposited))
dec = msgspec.json.Decoder(Deposited)
t("msgspec decode into the attrs class", lambda: dec.decode(text))
