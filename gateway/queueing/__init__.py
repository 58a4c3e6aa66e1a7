"""Overflow queueing: a request refused for capacity waits its turn in line, or becomes a job (docs/queueing.md).

    wish.py        what a request asks (x-portico-queue-timeout, Prefer: respond-async), and a job run's terms
    admission.py   the queue's side of admission, called by gateway.accounting.CallSession.admit (the limits)
                   and by the routing loop (gateway.routing_caps: a model's deployments all at their caps)
    lines.py       lines of waiters in this process, and the dispatcher that gives each line's head its turn
    orders.py      whose turn: start-time fair queueing, in this process or shared through Redis
    published.py   this process's requests in line per tenant, kept in Redis for the admin (queueing.waiting)
    deferral.py    202 Accepted: the request kept as a job and handed to the workers
    runner.py      a job's run, through the same pipeline as a live request (imported by its task only)

Fair across tenants, across processes. A line's order is start-time fair
queueing with the tenant as the flow: a tenant with 40 waiters and one with 2
take turns, so a burst delays its own tenant, never another beyond a turn.
Within one process the line's dispatcher gives each freed slot to the head
and to nobody behind it, and is woken as soon as a call of the process ends.

With several processes that is not enough, and the queue does not pretend it
is. The process whose call just ended hears of it first and would give the
slot to its own head every time, while a waiter in another process, which only
polls, would almost never win it: per-process fairness plus the shared limiter
lets one process's waiters starve another's. So a line on the limiter's shared
limits (a key on a model) keeps its order in Redis (orders.SharedOrder): only
the line's head, in whichever process it waits, tries; the others wait for
their turn. Each process looks at its shared lines every POLL (50 ms) and
renews its waiters' leases there, so a process that dies leaves no waiter
holding a line for longer than the lease (5 s). What it cannot order is a
request that has not waited yet: one arriving in a process with no waiters of
its line tries at once, and may take a slot that was freed in the moment
before the head's next try.

The same holds for a model's deployments, whose caps every process shares
through the limiter (gateway.routing_caps): their line (`deployments:<model>`)
is kept in Redis too, a call that ends in any process frees a slot its head
takes within a POLL (at once in the process where it ended), and a request
that has not waited yet makes one pass of the routing loop before it joins.
"""
