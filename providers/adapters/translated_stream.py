"""What every translated chat stream holds: the flags the relay reads, and how it writes OpenAI's chunks.

The kinds that speak their own wire protocol (Anthropic, Gemini, Cohere) each turn their upstream's
events into `chat.completion.chunk` payloads. Their events differ; what they hand the relay does not:
`done`, `failed`, `usage` and `upstream_id` (see `base.StreamTranslator`), chunks under one head (id,
created, model), and a usage chunk at the end only when the client asked for one and the upstream's
count is one Portico can trust.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from providers.adapters.shapes import new_completion_id
from providers.adapters.wire import client_usage, usage_is_plausible
from providers.redaction import NO_SECRETS, Redactor

__all__ = ["TranslatedStream"]


class TranslatedStream:
    __slots__ = ("_head", "_wrote", "done", "failed", "include_usage", "redactor", "upstream_id", "usage")

    # The ValueError for an event that is not a JSON object, naming whose stream it came from.
    malformed: ClassVar[str] = "not a stream event"
    # OpenAI writes `usage: null` on every chunk but the last once usage is asked for; a kind that says so
    # does the same.
    null_usage_on_chunks: ClassVar[bool] = False

    def __init__(
        self, public_model: str, *, created: int, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> None:
        self.done = False  # the upstream ended its stream
        self.failed = False  # the upstream reported an error, already relayed as an error payload
        self.usage: dict[str, Any] | None = None
        self.include_usage = include_usage
        self.redactor = redactor
        self.upstream_id = ""  # the upstream's id for the answer, kept for the ledger
        self._wrote = False  # some text or a tool call was relayed
        self._head: dict[str, Any] = {
            "id": new_completion_id(),
            "object": "chat.completion.chunk",
            "created": created,
            "model": public_model,
        }

    def _event(self, event: bytes) -> dict[str, Any]:
        # Text and tool arguments may quote a secret as errors can: it is redacted before it is parsed.
        data = orjson.loads(self.redactor.bytes(event))
        if not isinstance(data, dict):
            raise ValueError(self.malformed)  # the relay ends a stream on ValueError
        return data

    def _part(self, value: Any) -> dict[str, Any]:
        """An object inside an event, {} if it is missing; ValueError if the event holds something else there."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(self.malformed)
        return value

    def _index(self, data: dict[str, Any]) -> int:
        """An event's block or call index (-1 if it has none); ValueError if it is not a number."""
        index = data.get("index", -1)
        if not isinstance(index, int):
            raise ValueError(self.malformed)
        return index

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, *, index: int = 0) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk: dict[str, Any] = {**self._head, "choices": [choice]}
        if self.null_usage_on_chunks and self.include_usage:
            chunk["usage"] = None
        return orjson.dumps(chunk)

    def _keep_usage(self, usage: dict[str, Any] | None) -> None:
        # A count that cannot be right (none at all, say) is left to the gateway, which counts and sends its own.
        self.usage = usage if usage_is_plausible(usage, wrote_output=self._wrote) else None

    def _usage_chunks(self) -> list[bytes]:
        """The last chunk, with the usage and no choices, if the client asked for one and there is one to send."""
        if not self.include_usage or self.usage is None:
            return []
        return [orjson.dumps({**self._head, "choices": [], "usage": client_usage(self.usage)})]
