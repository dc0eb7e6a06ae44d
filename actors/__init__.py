"""Durable entity workflows: event-sourced actors with a mailbox, snapshots and a supervisor."""

from actors._version import __version__ as __version__
from actors.activities import ActivityContext as ActivityContext
from actors.activities import RetryPolicy as RetryPolicy
from actors.entity import Entity as Entity
from actors.entity import applies as applies
from actors.entity import query as query
from actors.entity import signal as signal
from actors.errors import ActivityFailed as ActivityFailed
from actors.errors import ActorsError as ActorsError
from actors.errors import CompensationFailed as CompensationFailed
from actors.errors import CorruptRecord as CorruptRecord
from actors.errors import DeadlineExceeded as DeadlineExceeded
from actors.errors import DeadlockError as DeadlockError
from actors.errors import DefinitionError as DefinitionError
from actors.errors import HandlerFailed as HandlerFailed
from actors.errors import IdempotencyConflict as IdempotencyConflict
from actors.errors import InvalidArguments as InvalidArguments
from actors.errors import NonDeterminismError as NonDeterminismError
from actors.errors import NotOurDatabase as NotOurDatabase
from actors.errors import PayloadTooLarge as PayloadTooLarge
from actors.errors import Rejected as Rejected
from actors.errors import SerializationError as SerializationError
from actors.errors import StoreError as StoreError
from actors.errors import StoreLocked as StoreLocked
from actors.errors import SystemClosed as SystemClosed
from actors.errors import UnknownEntity as UnknownEntity
from actors.errors import UnknownHandler as UnknownHandler
from actors.ref import EntityRef as EntityRef
from actors.supervisor import SupervisorPolicy as SupervisorPolicy
from actors.system import ActorSystem as ActorSystem
from actors.system import SystemStatistics as SystemStatistics
from actors.timers import Clock as Clock
from actors.timers import SystemClock as SystemClock
from persistence.codec import event_type as event_type
from persistence.codec import register_type as register_type

__all__ = [
    "ActivityContext",
    "ActivityFailed",
    "ActorSystem",
    "ActorsError",
    "Clock",
    "CompensationFailed",
    "CorruptRecord",
    "DeadlineExceeded",
    "DeadlockError",
    "DefinitionError",
    "Entity",
    "EntityRef",
    "HandlerFailed",
    "IdempotencyConflict",
    "InvalidArguments",
    "NonDeterminismError",
    "NotOurDatabase",
    "PayloadTooLarge",
    "Rejected",
    "RetryPolicy",
    "SerializationError",
    "StoreError",
    "StoreLocked",
    "SupervisorPolicy",
    "SystemClock",
    "SystemClosed",
    "SystemStatistics",
    "UnknownEntity",
    "UnknownHandler",
    "applies",
    "event_type",
    "query",
    "register_type",
    "signal",
]
