"""The entity types a system runs, its resources and its id rules. Internal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from actors._entity import Entity, build_spec
from actors._ids import check_text
from actors._spec import EntitySpec
from actors.errors import DefinitionError, InvalidArguments, UnknownEntity
from persistence.codec import Codec

T = TypeVar("T")


class Registry:
    """Specs of the system's entity classes (by stored name and by class), its
    resources and the longest id it takes."""

    __slots__ = ("_by_cls", "max_id_length", "resources", "specs")

    def __init__(
        self,
        entities: Sequence[type[Entity]],
        codec: Codec,
        *,
        resources: Mapping[type, object],
        max_id_length: int,
    ) -> None:
        self.specs: dict[str, EntitySpec] = {}
        self._by_cls: dict[type, EntitySpec] = {}
        self.resources: dict[type, object] = dict(resources)
        self.max_id_length = max_id_length
        for cls in entities:
            spec = build_spec(cls, codec)
            if spec.name in self.specs:
                raise DefinitionError(
                    f"two entity classes are named {spec.name!r}: set entity_name on one of them"
                )
            self.specs[spec.name] = spec
            self._by_cls[cls] = spec
        if not self.specs:
            raise InvalidArguments("entities is empty: name at least one Entity class")

    def runs_type(self, name: str) -> bool:
        """Whether the entity type stored as ``name`` is registered."""
        return name in self.specs

    def spec_of(self, entity: type[Any] | str) -> EntitySpec:
        """The spec of a registered entity class or name; UnknownEntity otherwise."""
        spec = self.specs.get(entity) if isinstance(entity, str) else self._by_cls.get(entity)
        if spec is None:
            name = entity if isinstance(entity, str) else getattr(entity, "__qualname__", repr(entity))
            raise UnknownEntity(
                f"unknown entity type {name!r:.100}; this system runs: {', '.join(sorted(self.specs))}"
            )
        return spec

    def check_id(self, entity_id: object) -> None:
        """Raise InvalidArguments unless ``entity_id`` is a usable entity id."""
        check_text(entity_id, "entity id", max_length=self.max_id_length)

    def resource(self, kind: type[T]) -> T:
        """The resource registered for ``kind`` (or a subclass of it); InvalidArguments if none."""
        found = self.resources.get(kind)
        if found is None:
            found = next((v for k, v in self.resources.items() if issubclass(k, kind)), None)
        if found is None:
            have = ", ".join(sorted(k.__qualname__ for k in self.resources)) or "none"
            raise InvalidArguments(
                f"no resource of type {kind!r:.80} was given to the system (it has: {have})"
            )
        return found  # type: ignore[return-value]
