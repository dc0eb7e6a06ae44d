"""The public API is what ``actors`` and ``persistence`` re-export, and it is documented.

Each package ``__init__`` only re-exports (``from m import X as X``) and lists the
same names in ``__all__``; no private name is exported; every exported object and
every public method or property of an exported class has a docstring.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from types import ModuleType

import pytest

PACKAGES = ["actors", "persistence"]


def package(name: str) -> ModuleType:
    return importlib.import_module(name)


def reexports(module: ModuleType) -> tuple[set[str], set[str]]:
    """(names re-exported as ``X as X``, other names the ``__init__`` binds)."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    explicit, other = set(), set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if node.module == "__future__":
                    continue
                (explicit if alias.asname == alias.name else other).add(bound)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            other.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            other.add(node.name)
    other.discard("__all__")
    return explicit, other


def own_doc(obj: object) -> str | None:
    """The object's own docstring (a class does not inherit one here)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return doc.strip() if isinstance(doc, str) and doc.strip() else None


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_exactly_the_explicit_reexports(name: str) -> None:
    module = package(name)
    explicit, other = reexports(module)
    assert sorted(module.__all__) == sorted(set(module.__all__)), "__all__ has duplicates"
    assert set(module.__all__) == explicit - {"__version__"}  # a dunder, not in __all__
    assert not other, f"{name}/__init__.py binds names outside the X-as-X re-exports: {sorted(other)}"


@pytest.mark.parametrize("name", PACKAGES)
def test_no_private_name_is_exported(name: str) -> None:
    module = package(name)
    assert [n for n in module.__all__ if n.startswith("_")] == []
    for n in module.__all__:
        obj = getattr(module, n)
        origin = getattr(obj, "__module__", name)
        assert origin.split(".")[0] in PACKAGES, f"{name}.{n} comes from {origin}"


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_has_a_docstring(name: str) -> None:
    module = package(name)
    assert own_doc(module)
    missing = [n for n in module.__all__ if own_doc(getattr(module, n)) is None]
    assert missing == []


@pytest.mark.parametrize("name", PACKAGES)
def test_public_methods_of_public_classes_have_docstrings(name: str) -> None:
    module = package(name)
    missing = []
    for n in module.__all__:
        cls = getattr(module, n)
        if not isinstance(cls, type) or issubclass(cls, BaseException):
            continue
        for attr, value in vars(cls).items():
            if attr.startswith("_"):
                continue
            target = value.fget if isinstance(value, property) else value
            if isinstance(target, staticmethod | classmethod):
                target = target.__func__
            if not (inspect.isfunction(target) or isinstance(value, property)):
                continue
            if own_doc(target) is None:
                missing.append(f"{n}.{attr}")
    assert missing == []


def test_both_packages_export_the_error_tree() -> None:
    actors, persistence = package("actors"), package("persistence")
    for n in ("StoreError", "StoreLocked", "NotOurDatabase", "CorruptRecord"):
        assert getattr(actors, n) is getattr(persistence, n)
    errors = [getattr(actors, n) for n in actors.__all__]
    tree = [e for e in errors if isinstance(e, type) and issubclass(e, BaseException)]
    assert all(issubclass(e, actors.ActorsError) for e in tree)
    for n in (
        "Rejected",
        "UnknownHandler",
        "InvalidArguments",
        "PayloadTooLarge",
        "SerializationError",
        "IdempotencyConflict",
        "HandlerFailed",
        "NonDeterminismError",
        "ActivityFailed",
        "SystemClosed",
        "StoreError",
        "StoreLocked",
        "NotOurDatabase",
        "CorruptRecord",
    ):
        assert n in actors.__all__, f"DESIGN.md section 2.10 names actors.{n}"
