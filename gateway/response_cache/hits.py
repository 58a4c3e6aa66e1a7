"""Answering from the cache: the call is admitted and recorded like any other, priced as its policy says.

A hit still counts against the key's and tenant's limits (it is admitted
through the call's session, as a miss is) and writes one ledger row: no
deployment, 0 attempts, provider cost 0 (no provider was asked), the stored
usage, and the tenant's price for it scaled by the policy (full, free or a
percent). Its `upstream_id` is `cache:` and the id of the answer first served;
for embeddings, whose answers have no id, the request id of the call that
first got it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson
from django.http import HttpResponse

from billing.facade import BillingSnapshot
from billing.metering import usd
from caching.facade import CacheRule
from gateway.accounting import Call, CallSession
from gateway.extensions import Extensions
from gateway.relay import put_headers
from gateway.response_cache.embeddings import embeddings_hit
from gateway.response_cache.replies import fresh_answer, stream_of
from gateway.sse import STREAM_CONTENT_TYPE, STREAM_HEADERS

# The prices a hit is charged at, per (public model, percent): the snapshot's billing they were derived from, and
# that billing with the model's price scaled. Rebuilt when the snapshot is; bounded by the policies there are.
_scaled: dict[tuple[str, int], tuple[BillingSnapshot, BillingSnapshot]] = {}


def hit_billing(billing: BillingSnapshot, public_id: str, rule: CacheRule) -> BillingSnapshot:
    """`billing` with the model's tenant price scaled to what a hit costs (itself when a hit pays full price)."""
    if rule.percent >= 100:
        return billing
    memo = _scaled.get((public_id, rule.percent))
    if memo is not None and memo[0] is billing:
        return memo[1]
    prices = dict(billing.prices)
    schedule = prices.pop(public_id, None)
    if schedule is not None and rule.percent > 0:
        factor = rule.price_factor
        prices[public_id] = dataclasses.replace(
            schedule,
            prices=tuple(
                dataclasses.replace(
                    price,
                    input=price.input * factor,
                    output=price.output * factor,
                    cached_input=price.cached_input * factor,
                )
                for price in schedule.prices
            ),
        )
    scaled = dataclasses.replace(billing, prices=prices)
    _scaled[(public_id, rule.percent)] = (billing, scaled)
    return scaled


def replayed(call: Call, stored: bytes) -> tuple[bytes, dict[str, Any] | None, str]:
    """A hit's body, the usage it is charged for, and the id of what was first served (see the module docstring)."""
    if call.operation == "embeddings":
        return embeddings_hit(stored)  # the very bytes first served: there is no id to renew
    answer, first_id = fresh_answer(call.operation, stored)
    if call.streamed:
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        return stream_of(call.operation, answer, include_usage=include_usage), answer.get("usage"), first_id
    return orjson.dumps(answer), answer.get("usage"), first_id


async def answer_hit(
    call: Call, billing: BillingSnapshot, ext: Extensions, rule: CacheRule, stored: bytes
) -> HttpResponse:
    """Admit the call, record it, and serve the stored answer: whole, or as a stream if it was asked for one."""
    session = CallSession(call, hit_billing(billing, call.model.public_id, rule))
    limit_headers = await session.admit()  # a refusal (429) is raised, and recorded, as for any call
    content, call.usage, first_id = replayed(call, stored)
    call.upstream_id = f"cache:{first_id}"
    if call.streamed:
        call.first_token = time.monotonic()  # the whole stream goes out at once
    cost = session.close()
    headers = {**limit_headers, "x-portico-attempts": "0", "x-portico-cache": "hit"}
    if call.streamed:
        # The whole stream is in hand: one body, framed as the chunks a live stream would send.
        response = HttpResponse(content, content_type=STREAM_CONTENT_TYPE, headers=STREAM_HEADERS)
    else:
        response = HttpResponse(content, content_type="application/json")
        headers["x-portico-cost"] = usd(cost)
    put_headers(response, headers)
    if ext.request_id:
        response["x-request-id"] = ext.request_id  # the client's value: through Django's checks
    return response
