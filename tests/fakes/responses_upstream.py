"""The fake OpenAI upstream with OpenAI's /v1/responses besides everything it serves already.

A `Reply`'s content becomes a `response` object with one message, whole or
streamed as the Responses API's typed events (one delta per word), with
`input_tokens` of `prompt_tokens`; `Fail`, `Hang` and `CloseBeforeAnswer` apply
as on the other endpoints. Requests are recorded with the others (`received`).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.openai_upstream import CREATED, FakeUpstream, Reply

RESPONSE_ID = "resp_fakeupstream0001"
MESSAGE_ID = "msg_fakeupstream0001"


def response_body(model: str, reply: Reply, status: str = "completed") -> dict[str, Any]:
    words = len(reply.content.split())
    done = status == "completed"
    content = [{"type": "output_text", "text": reply.content, "annotations": []}]
    message = {"type": "message", "id": MESSAGE_ID, "status": "completed", "role": "assistant", "content": content}
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "model": model,
        "output": [message] if done else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "temperature": 1.0,
        "top_p": 1.0,
        "metadata": {},
        "usage": {
            "input_tokens": reply.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": words,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.prompt_tokens + words,
        }
        if done
        else None,
    }


def response_events(model: str, reply: Reply) -> list[dict[str, Any]]:
    started = response_body(model, reply, "in_progress")
    item = {"type": "message", "id": MESSAGE_ID, "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    where = {"item_id": MESSAGE_ID, "output_index": 0, "content_index": 0}
    words = reply.content.split()
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", **where, "part": part},
    ]
    events += [
        {"type": "response.output_text.delta", **where, "delta": word if i == 0 else " " + word}
        for i, word in enumerate(words)
    ]
    final = response_body(model, reply)
    events += [
        {"type": "response.output_text.done", **where, "text": reply.content},
        {"type": "response.content_part.done", **where, "part": {**part, "text": reply.content}},
        {"type": "response.output_item.done", "output_index": 0, "item": final["output"][0]},
        {"type": "response.completed", "response": final},
    ]
    return [{**event, "sequence_number": index} for index, event in enumerate(events)]


class FakeResponsesUpstream(FakeUpstream):
    name = "fake-responses-upstream"

    def _add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        super()._add_routes(router, prefix)
        router.add_post(f"{prefix}/responses", self._responses)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        behaviour = self._log_request(request, body)
        model = str(body.get("model"))
        if (refusal := await self._refuse(request, model, behaviour)) is not None:
            return refusal
        reply = self._answering(behaviour, body.get("input"))
        if not body.get("stream"):
            return web.json_response(response_body(model, reply))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in response_events(model, reply):
            await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        await response.write_eof()
        return response
