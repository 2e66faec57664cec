"""The task fetching unit, task records and traces."""

from perfsmith.executor.fetching_unit import TaskFetchingUnit
from perfsmith.executor.observer import Cached, NullObserver, TaskObserver
from perfsmith.executor.records import TaskRecord, TaskStatus
from perfsmith.executor.trace import Trace, build_trace, critical_path

__all__ = [
    "Cached",
    "NullObserver",
    "TaskFetchingUnit",
    "TaskObserver",
    "TaskRecord",
    "TaskStatus",
    "Trace",
    "build_trace",
    "critical_path",
]
