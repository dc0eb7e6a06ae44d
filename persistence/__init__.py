"""Where an entity's lifetime is kept: the Store protocol and its implementations."""

from persistence.codec import Codec as Codec
from persistence.codec import event_type as event_type
from persistence.errors import (
    CorruptRecord as CorruptRecord,
)
from persistence.errors import (
    NotOurDatabase as NotOurDatabase,
)
from persistence.errors import (
    StoreError as StoreError,
)
from persistence.errors import (
    StoreLocked as StoreLocked,
)
from persistence.memory import MemoryStore as MemoryStore
from persistence.sqlite import SqliteStore as SqliteStore
from persistence.store import Store as Store

__all__ = [
    "Codec",
    "CorruptRecord",
    "MemoryStore",
    "NotOurDatabase",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreLocked",
    "event_type",
]
