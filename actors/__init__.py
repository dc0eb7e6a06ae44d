"""Durable entity workflows: event-sourced actors with a mailbox, snapshots and a supervisor."""

from actors._activities import ActivityContext as ActivityContext
from actors._clock import Clock as Clock
from actors._clock import SystemClock as SystemClock
from actors._cluster import Member as Member
from actors._entity import Entity as Entity
from actors._entity import applies as applies
from actors._entity import query as query
from actors._entity import signal as signal
from actors._policies import Retention as Retention
from actors._policies import RetryPolicy as RetryPolicy
from actors._policies import SupervisorPolicy as SupervisorPolicy
from actors._ref import EntityRef as EntityRef
from actors._ref import InvocationHandle as InvocationHandle
from actors._system import ActorSystem as ActorSystem
from actors._system import SystemStatistics as SystemStatistics
from actors._version import __version__ as __version__
from actors.errors import ActivityFailed as ActivityFailed
from actors.errors import ActorsError as ActorsError
from actors.errors import Cancelled as Cancelled
from actors.errors import CommitUnknown as CommitUnknown
from actors.errors import CompensationFailed as CompensationFailed
from actors.errors import CorruptRecord as CorruptRecord
from actors.errors import DatabaseNotFound as DatabaseNotFound
from actors.errors import DeadlineExceeded as DeadlineExceeded
from actors.errors import DeadlockError as DeadlockError
from actors.errors import DefinitionError as DefinitionError
from actors.errors import HandlerFailed as HandlerFailed
from actors.errors import IdempotencyConflict as IdempotencyConflict
from actors.errors import InvalidArguments as InvalidArguments
from actors.errors import InvalidWrite as InvalidWrite
from actors.errors import NonDeterminismError as NonDeterminismError
from actors.errors import NotOurDatabase as NotOurDatabase
from actors.errors import Overloaded as Overloaded
from actors.errors import PayloadTooLarge as PayloadTooLarge
from actors.errors import Rejected as Rejected
from actors.errors import SerializationError as SerializationError
from actors.errors import ShardLost as ShardLost
from actors.errors import SignalTaken as SignalTaken
from actors.errors import StoreError as StoreError
from actors.errors import StoreFull as StoreFull
from actors.errors import StoreLocked as StoreLocked
from actors.errors import StoreReadOnly as StoreReadOnly
from actors.errors import StoreTimeout as StoreTimeout
from actors.errors import StoreUnavailable as StoreUnavailable
from actors.errors import SystemClosed as SystemClosed
from actors.errors import UnknownEntity as UnknownEntity
from actors.errors import UnknownHandler as UnknownHandler
from persistence.codec import event_type as event_type
from persistence.codec import register_type as register_type

__all__ = [
    "ActivityContext",
    "ActivityFailed",
    "ActorSystem",
    "ActorsError",
    "Cancelled",
    "Clock",
    "CommitUnknown",
    "CompensationFailed",
    "CorruptRecord",
    "DatabaseNotFound",
    "DeadlineExceeded",
    "DeadlockError",
    "DefinitionError",
    "Entity",
    "EntityRef",
    "HandlerFailed",
    "IdempotencyConflict",
    "InvalidArguments",
    "InvalidWrite",
    "InvocationHandle",
    "Member",
    "NonDeterminismError",
    "NotOurDatabase",
    "Overloaded",
    "PayloadTooLarge",
    "Rejected",
    "Retention",
    "RetryPolicy",
    "SerializationError",
    "ShardLost",
    "SignalTaken",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "StoreReadOnly",
    "StoreTimeout",
    "StoreUnavailable",
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
