"""Job states. A job ends in exactly one of the final states, always with a reason."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # the executor's own checks refused it before anything ran


ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING})
FINAL = frozenset(JobState) - ACTIVE
