"""The queue's background job: run a request accepted as a job (gateway.queueing.runner), by job id.

    queue_job_run    serve the job once; no room within the run's slice: queued again after a pause

It may run twice or late (acks_late, redelivery, a hand-over when a client polls):
each run claims the job before touching it, and a second one finds it held or done.
Its time limits are its own, longer than any call: a run is bounded by its slice
in line and the call's timeout, and its claim is renewed while it runs.
"""

from __future__ import annotations

from gateway.background import enqueue
from gateway.queueing import runner
from gateway.queueing.deferral import TASK
from gateway.tasks_base import portico_task


# Its own time limits: a run waits in line for its slice, then makes a call that may take as long as any.
@portico_task(acks_late=True, soft_time_limit=runner.run_seconds(), time_limit=runner.run_seconds() + 30)
def queue_job_run(job_id: str) -> None:
    pause = runner.run(job_id)
    if pause is not None:
        enqueue(TASK, job_id, queue="interactive", countdown=pause)
