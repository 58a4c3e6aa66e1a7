"""POST /v1/messages/count_tokens: Anthropic's own count where it can give one, else Portico's estimate.

When the model's first deployment is Anthropic's, the request goes to its
`/messages/count_tokens` (with only the fields that endpoint takes) and its
count is the answer. Any other deployment, or an Anthropic one that fails,
gets Portico's own count of the request's chat form, with the tokenizer and
the rules the limits estimate a prompt with (billing.tokens). Nothing is
charged or written to the ledger: counting is free, as at Anthropic.
"""

from __future__ import annotations

import logging

import orjson

from gateway.accounting import Call, prompt_estimate
from gateway.errors import PorticoError
from gateway.messages.passthrough import Outbound, upstream_request
from gateway.relay import read_whole, send
from providers.facade import RouteInfo

logger = logging.getLogger(__name__)

# What Anthropic's count_tokens accepts; it refuses any other field (max_tokens, stream, sampling...).
COUNTED_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers", "context_management"}
)


async def input_tokens(call: Call, outbound: Outbound) -> int:
    """The prompt's tokens: the Anthropic deployment's count, else Portico's estimate of the call's chat form."""
    route = call.model.routes[0]
    if route.provider.kind == "anthropic":
        counted = await _upstream_count(route, outbound)
        if counted is not None:
            return counted
    return prompt_estimate(call)


async def _upstream_count(route: RouteInfo, outbound: Outbound) -> int | None:
    body = {name: value for name, value in outbound.body.items() if name in COUNTED_FIELDS}
    request = upstream_request(route, Outbound(body, outbound.version, outbound.beta), "/messages/count_tokens")
    try:
        payload = await read_whole(route, await send(route, request))
        counted = orjson.loads(payload).get("input_tokens")
    except (PorticoError, orjson.JSONDecodeError, AttributeError) as exc:
        logger.info("count_tokens on %s failed, counted here instead: %s", route.name, type(exc).__name__)
        return None
    return counted if isinstance(counted, int) and not isinstance(counted, bool) else None
