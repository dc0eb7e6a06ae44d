"""Stored event names never depend on how the program was started; renames keep old rows.

The two-entry-point tests run a real script in subprocesses: once as ``__main__``
(``python -m shop.app`` and ``python shop/app.py``) and once imported by another
program, all on one SQLite file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

from actors import ActorSystem, CorruptRecord, DefinitionError, Entity, applies, event_type, query, signal
from persistence import Codec, MemoryStore, SqliteStore
from persistence.codec import EventNameError, event_info

pytestmark = pytest.mark.anyio

APP = '''
"""A tiny app whose event class has no @event_type: its name comes from its module."""
import sys
import anyio
import attrs
from actors import ActorSystem, Entity, applies, event_type, query, signal
from persistence import SqliteStore

DECORATE = {decorate!r}


@attrs.frozen
class Added:
    n: int


if DECORATE:
    Added = event_type("shop.added")(Added)


@attrs.define
class Cart(Entity):
    items: int = 0

    @signal
    def add(self, n: int) -> None:
        self.emit(Added(n))

    @applies
    def _added(self, e: Added) -> None:
        self.items += e.n

    @query
    def count(self) -> int:
        return self.items


async def run(path: str, n: int) -> None:
    async with ActorSystem(SqliteStore(path), [Cart]) as system:
        if n:
            await system.ref(Cart, "c").ask(Cart.add, n)
        print("items", await system.ref(Cart, "c").query(Cart.count))


if __name__ == "__main__":
    anyio.run(run, sys.argv[1], int(sys.argv[2]))
'''

IMPORTER = """
import sys
import anyio
from shop.app import run
anyio.run(run, sys.argv[1], int(sys.argv[2]))
"""


def make_app(root: Path, *, decorate: bool) -> None:
    (root / "shop").mkdir(exist_ok=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "app.py").write_text(textwrap.dedent(APP.format(decorate=decorate)))
    (root / "other.py").write_text(IMPORTER)


def python(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, *argv], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_a_module_run_with_dash_m_and_imported_store_the_same_name(tmp_path: Path) -> None:
    make_app(tmp_path, decorate=False)
    db = str(tmp_path / "shop.db")
    first = python(tmp_path, "-m", "shop.app", db, "2")  # Added is __main__.Added here
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["items", "2"]
    second = python(tmp_path, "other.py", db, "3")  # here it is shop.app.Added
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["items", "5"]
    third = python(tmp_path, "-m", "shop.app", db, "0")
    assert third.stdout.split() == ["items", "5"], third.stderr
    import sqlite3

    with sqlite3.connect(db) as conn:
        names = {r[0] for r in conn.execute("SELECT DISTINCT type_name FROM events")}
    assert names == {"shop.app.Added"}


@pytest.mark.slow
def test_a_script_run_by_path_is_refused_with_the_fix(tmp_path: Path) -> None:
    make_app(tmp_path, decorate=False)
    db = tmp_path / "shop.db"
    run = python(tmp_path, "shop/app.py", str(db), "1")
    assert run.returncode != 0
    assert "DefinitionError" in run.stderr
    assert "@event_type('added')" in run.stderr
    assert "__main__" in run.stderr
    assert not db.exists()  # refused before anything was opened or written


@pytest.mark.slow
def test_with_event_type_every_entry_point_agrees(tmp_path: Path) -> None:
    make_app(tmp_path, decorate=True)
    db = str(tmp_path / "shop.db")
    assert python(tmp_path, "shop/app.py", db, "1").stdout.split() == ["items", "1"]
    assert python(tmp_path, "-m", "shop.app", db, "1").stdout.split() == ["items", "2"]
    assert python(tmp_path, "other.py", db, "1").stdout.split() == ["items", "3"]


def test_event_info_of_a_main_class_without_a_module_name_raises() -> None:
    @attrs.frozen
    class Ev:
        x: int

    Ev.__module__ = "__main__"
    main = sys.modules["__main__"]
    saved = main.__dict__.get("__spec__")
    try:
        main.__spec__ = None
        with pytest.raises(EventNameError, match=r"@event_type\('.*ev'\)"):
            event_info(Ev)
    finally:
        main.__spec__ = saved


# ---------------------------------------------------------------- aliases and unknown names


@attrs.frozen
class OldAdded:
    n: int


@event_type("cart.item_added", aliases=(f"{__name__}.OldAdded", "cart.added"))
@attrs.frozen
class ItemAdded:
    n: int


def cart(event: type, name: str = "Cart") -> type[Entity]:
    @attrs.define
    class Cart(Entity):
        entity_name = name
        snapshot_every = 0
        items: int = 0

        @signal
        def add(self, n: int) -> None:
            self.emit(event(n))

        @query
        def count(self) -> int:
            return self.items

    def _applied(self: Cart, e: object) -> None:
        self.items += e.n  # type: ignore[attr-defined]

    _applied.__annotations__ = {"e": event, "return": None}
    Cart._applied = applies(_applied)  # type: ignore[attr-defined]
    return Cart


async def test_an_alias_reads_rows_of_the_old_name_and_new_rows_use_the_new_one(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    old = cart(OldAdded)
    async with ActorSystem(SqliteStore(path), [old]) as system:
        await system.ref(old, "c").ask("add", 2)
    new = cart(ItemAdded)
    async with ActorSystem(SqliteStore(path), [new]) as system:
        assert await system.ref(new, "c").query("count") == 2
        await system.ref(new, "c").ask("add", 3)
    async with ActorSystem(SqliteStore(path), [new]) as system:
        assert await system.ref(new, "c").query("count") == 5
    import sqlite3

    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type_name FROM events ORDER BY seq").fetchall()
    assert rows == [(f"{__name__}.OldAdded",), ("cart.item_added",)]


async def test_an_unknown_stored_name_says_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    old = cart(OldAdded)
    async with ActorSystem(SqliteStore(path), [old]) as system:
        await system.ref(old, "c").ask("add", 2)

    @event_type("cart.renamed")
    @attrs.frozen
    class Renamed:
        n: int

    new = cart(Renamed)
    async with ActorSystem(SqliteStore(path), [new]) as system:
        with pytest.raises(CorruptRecord) as info:
            await system.ref(new, "c").query("count")
    msg = str(info.value)
    assert f"unknown event type name '{__name__}.OldAdded'" in msg
    assert f"aliases=('{__name__}.OldAdded',)" in msg
    assert "entities" in msg


def test_alias_clashes_and_bad_aliases_are_refused() -> None:
    codec = Codec()
    codec.register_event(ItemAdded)

    @event_type("cart.added")
    @attrs.frozen
    class Clash:
        n: int

    with pytest.raises(TypeError, match=r"'cart\.added' is used by both"):
        codec.register_event(Clash)
    for bad in ["cart.x", ("",), ("cart.x", "cart.x"), ("same",), (1,)]:
        with pytest.raises(TypeError):
            event_type("same", aliases=bad)  # type: ignore[arg-type]


async def test_an_alias_clash_between_entities_is_a_definition_error() -> None:
    @event_type("cart.added")
    @attrs.frozen
    class Clash:
        n: int

    with pytest.raises(DefinitionError, match=r"cart\.added"):
        ActorSystem(MemoryStore(), [cart(ItemAdded), cart(Clash, "Other")])


async def test_an_alias_keeps_upcasting_from_the_old_version() -> None:
    @event_type("v.new", version=2, upcasters={1: lambda d: {"n": d["count"]}}, aliases=("v.old",))
    @attrs.frozen
    class V2:
        n: int

    from persistence.store import StoredEvent

    codec = Codec()
    codec.register_event(V2)
    assert codec.decode_event("C/c", StoredEvent(1, "v.old", 1, '{"count": 4}', 0.0)) == V2(4)
