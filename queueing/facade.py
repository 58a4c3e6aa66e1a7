"""What the gateway is handed of queued jobs: frozen values, no models."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINAL = frozenset({"completed", "failed", "expired"})


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: str
    tenant_id: int
    api_key_id: int | None
    key_prefix: str
    operation: str
    path: str
    model: str
    body: str
    status: str
    created_at: float  # epoch seconds
    deadline: float  # epoch seconds
    headers: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    client_request_id: str = ""
    attempts: int = 0
    lease_until: float | None = None  # epoch seconds
    sent_at: float | None = None  # epoch seconds the run holding it was about to send it upstream
    enqueued_at: float = 0.0  # epoch seconds
    queue_ms: int | None = None
    result_status: int | None = None
    result_body: str = ""
    error_code: str = ""

    def object(self, *, status: str | None = None) -> dict[str, Any]:
        """The job as a client reads it while it waits (`queue.job`)."""
        return {
            "id": self.id,
            "object": "queue.job",
            "status": status or self.status,
            "model": self.model,
            "endpoint": self.path,
            "created_at": int(self.created_at),
            "expires_at": int(self.deadline),
            "attempts": self.attempts,
        }


@dataclass(frozen=True, slots=True)
class JobClaim:
    """A run's hold on a job: the job, and whether a run before it died holding it."""

    job: JobInfo
    token: str
    orphaned: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a job's run ended: its status, and the answer (or error) the client gets."""

    status: str  # completed | failed | expired
    result_status: int
    result_body: bytes
    error_code: str = ""
    queue_ms: int | None = None


@dataclass(frozen=True, slots=True)
class TenantQueue:
    """One tenant's queue, as the console shows it."""

    tenant_id: int
    tenant: str
    queued: int  # jobs waiting now
    running: int
    in_line: int  # requests waiting in line now (in-line waits, every process's; queueing.waiting)
    median_wait_ms: int | None  # of the calls that waited (in line or as jobs) over the window
    waited: int  # how many of those there were
