"""OpenAI's Responses API (`/v1/responses`) served on top of chat completions.

    requests.py     a Responses request checked and turned into a chat completions body
    answers.py      a chat completion turned into a `response` object; usage both ways
    events.py       a chat stream turned into the Responses API's typed events
    passthrough.py  deployments whose server has /v1/responses of its own: sent there as is
    serving.py      one call through gateway.routing, answered whole or streamed
    storage.py      responses kept for `GET /v1/responses/{id}`, written off the request path

Every translation is pure (dict in, dict out; chunks in, events out); serving.py is the I/O shell.
"""
