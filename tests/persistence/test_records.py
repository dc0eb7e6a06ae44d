"""The store's records: immutable values, made in C and left out of the cyclic
collector (one ask makes three of them; README: Performance, tenth session)."""

from __future__ import annotations

import gc
import inspect
import pickle

import msgspec
import pytest

from persistence import store
from persistence.errors import InvalidWrite
from persistence.store import Commit, NewEvent, Prune, SignalRecord, replace

RECORDS = [
    cls
    for _name, cls in inspect.getmembers(store, inspect.isclass)
    if cls.__module__ == store.__name__
    and issubclass(cls, msgspec.Struct)
    and not cls.__name__.startswith("_")
]


def _signal() -> SignalRecord:
    return SignalRecord("Account", "a-1", "g:1", "deposit", '{"amount":1}', "", 1.0)


def _commit() -> Commit:
    event = NewEvent("Deposited", 1, '{"amount":1}')
    return Commit("Account", "a-1", _signal(), '{"ok":1}', 4, (event,), 2.0)


def test_every_record_of_the_store_is_a_frozen_untracked_struct() -> None:
    assert len(RECORDS) >= 20  # the module's records, found
    for cls in RECORDS:
        config = cls.__struct_config__
        assert config.frozen, cls
        assert not config.gc, cls  # the collector never walks them


def test_a_commit_is_a_value_outside_the_collector() -> None:
    c = _commit()
    assert not gc.is_tracked(c)
    assert not gc.is_tracked(c.signal)
    assert not gc.is_tracked(c.events[0])
    assert c == _commit()
    assert hash(c) == hash(_commit())
    with pytest.raises(AttributeError):
        c.outcome = "changed"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(c)) == c
    assert c.mark_row() == ("Account", "a-1", "g:1", "", '{"ok":1}', 2.0)


def test_replace_copies_with_fields_changed() -> None:
    c = _commit()
    other = replace(c, outcome='{"ok":2}', first_seq=5)
    assert (other.outcome, other.first_seq) == ('{"ok":2}', 5)
    assert (other.signal, other.events, other.recorded_at) == (c.signal, c.events, c.recorded_at)
    assert c.outcome == '{"ok":1}'  # the original is unchanged
    assert other != c
    with pytest.raises(TypeError):
        replace(c, no_such_field=1)


def test_prune_refuses_bad_arguments_when_made() -> None:
    assert Prune() == Prune(None, None, None, None)
    with pytest.raises(InvalidWrite, match="Prune limit must be 1"):
        Prune(limit=0)
    with pytest.raises(InvalidWrite, match="Prune marks_before must be a finite time"):
        Prune(marks_before=float("nan"))
    with pytest.raises(InvalidWrite, match="Prune keep_dead_letters must be an int"):
        Prune(keep_dead_letters=True)
    with pytest.raises(InvalidWrite, match="Prune dead_letters_before must be Unix seconds"):
        Prune(dead_letters_before="yesterday")  # type: ignore[arg-type]
    with pytest.raises(InvalidWrite, match="Prune limit must be 1"):
        replace(Prune(limit=5), limit=-1)  # a copy is checked too
