"""Where an entity's lifetime is kept: the Store protocol and its implementations."""

from persistence.codec import Codec as Codec
from persistence.codec import event_type as event_type
from persistence.errors import (
    CommitUnknown as CommitUnknown,
)
from persistence.errors import (
    CorruptRecord as CorruptRecord,
)
from persistence.errors import (
    InvalidWrite as InvalidWrite,
)
from persistence.errors import (
    NotOurDatabase as NotOurDatabase,
)
from persistence.errors import (
    ShardLost as ShardLost,
)
from persistence.errors import (
    SignalTaken as SignalTaken,
)
from persistence.errors import (
    StoreError as StoreError,
)
from persistence.errors import (
    StoreFull as StoreFull,
)
from persistence.errors import (
    StoreLocked as StoreLocked,
)
from persistence.errors import (
    StoreReadOnly as StoreReadOnly,
)
from persistence.errors import (
    StoreTimeout as StoreTimeout,
)
from persistence.errors import (
    StoreUnavailable as StoreUnavailable,
)
from persistence.memory import MemoryStore as MemoryStore
from persistence.postgres import PostgresStore as PostgresStore
from persistence.sqlite import SqliteStore as SqliteStore
from persistence.store import SharedStore as SharedStore
from persistence.store import Store as Store

__all__ = [
    "Codec",
    "CommitUnknown",
    "CorruptRecord",
    "InvalidWrite",
    "MemoryStore",
    "NotOurDatabase",
    "PostgresStore",
    "ShardLost",
    "SharedStore",
    "SignalTaken",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "StoreReadOnly",
    "StoreTimeout",
    "StoreUnavailable",
    "event_type",
]
