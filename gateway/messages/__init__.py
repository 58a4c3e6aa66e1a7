"""Anthropic's Messages API inbound: POST /v1/messages and /v1/messages/count_tokens for every public model.

    auth.py         the key, from `x-api-key` or a bearer token
    validation.py   Anthropic's checks on a request, in its wording
    requests.py     a Messages request as the chat request it stands for (pure)
    answers.py      a chat completion as a message: blocks, stop reason, usage (pure)
    events.py       chat chunks as Anthropic's stream events (pure)
    passthrough.py  Anthropic-kind deployments: the request and its answer as they are
    serving.py      the call through the routing loop, answered in Anthropic's shape
    reframe.py      a routed stream as Anthropic's event stream
    counting.py     count_tokens
    errors.py       the error tree in Anthropic's shape
    views.py        the view logic gateway/routers/messages.py calls

See docs/messages.md.
"""
