"""The Redis keys of the shared limiter, on a single Redis and on a Redis Cluster.

A single Redis (names unchanged since limits were first shared, so an upgrade keeps every counter):

    {prefix}:rl:{scope}:req            RPM bucket
    {prefix}:rl:{scope}:tok            TPM bucket
    {prefix}:rl:{scope}:cc             requests in flight
    {prefix}:budget:{scope}:{period}   a budget's counter

A Redis Cluster runs a script only when all its keys live in one hash slot, and
Redis hashes only the part of a key inside its first `{...}`. So there every
key carries the call's shard as a hash tag after the prefix:

    {prefix}:{<shard>}:rl:{scope}:req   and so on

The shard is the tenant when the call has a tenant-wide window or budget
(`tenant:3`): a tenant's limits are shared by all its keys, so every call that
touches them must name the same keys, and the tenant's own keys' windows
travel with them. Otherwise it is the owner of the first scope (`key:12`,
`deployment:5`). A caller that knows the tenant of every call sets
`Ask.shard` itself, and then a key's buckets never move. Without that, a key's
buckets move to the tenant's slot when its tenant gains a first limit or
budget, so that change starts the key's windows afresh (as a restart of Redis
would) and re-seeds its budget counter from the ledger.
"""

from __future__ import annotations

from billing.limits.verdicts import Ask

TENANT = "tenant:"


def shard_of(ask: Ask) -> str:
    """The hash tag of the call: `ask.shard` if set, else its tenant, else the owner of its first scope."""
    if ask.shard:
        return ask.shard
    scopes = [window.scope for window in ask.windows] + [budget.scope for budget in ask.budgets]
    owner = next((scope for scope in scopes if scope.startswith(TENANT)), scopes[0] if scopes else "")
    return ":".join(owner.split(":", 2)[:2])  # "key:12:model:gpt-4o" -> "key:12"


def stem(prefix: str, shard: str, *, cluster: bool) -> str:
    """What every key of one call starts with."""
    return f"{prefix}:{{{shard}}}" if cluster else prefix


def window_key(stem: str, scope: str, kind: str) -> str:
    """`kind`: "req", "tok" or "cc"."""
    return f"{stem}:rl:{scope}:{kind}"


def budget_key(stem: str, scope: str, period: str) -> str:
    return f"{stem}:budget:{scope}:{period}"
