"""The prediction transport: creation, polling, following to the stream, cancelling, against a mock network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from providers.adapters.replicate.errors import FAILED_PREDICTION_STATUS
from providers.adapters.replicate.transport import PredictionTransport

API = "https://api.replicate.test"
CREATE = f"{API}/v1/models/meta/llama/predictions"
URLS = {
    "get": f"{API}/v1/predictions/p1",
    "cancel": f"{API}/v1/predictions/p1/cancel",
    "stream": "https://streaming.api.replicate.test/v1/streams/p1",
}
SSE = "text/event-stream"
EVENTS = b"event: output\ndata: Hi\n\nevent: done\ndata: {}\n\n"


def prediction(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "p1", "status": status, "urls": URLS, "output": None, **fields}


class Network:
    """A scripted Replicate: answers by (method, url) in order, and remembers what it was sent."""

    def __init__(self, answers: dict[tuple[str, str], list[httpx.Response]]) -> None:
        self.answers = answers
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        queue = self.answers[(request.method, str(request.url))]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def calls(self) -> list[tuple[str, str]]:
        return [(request.method, str(request.url)) for request in self.sent]


def json(status: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=body)


def transport(network: Network, sleep: Callable[[float], Any] | None = None) -> PredictionTransport:
    async def no_wait(_seconds: float) -> None:
        await asyncio.sleep(0)

    return PredictionTransport(httpx.MockTransport(network), sleep=sleep or no_wait)


def creation(*, stream: bool = False) -> httpx.Request:
    body: dict[str, Any] = {"input": {"prompt": "Hi"}}
    headers = {"authorization": "Bearer r8_key", "content-type": "application/json"}
    if stream:
        body["stream"] = True
    else:
        headers["prefer"] = "wait=29"
    return httpx.Request("POST", CREATE, headers=headers, content=orjson.dumps(body), extensions={"timeout": {}})


async def send(network: Network, request: httpx.Request) -> tuple[int, bytes]:
    answer = await transport(network).handle_async_request(request)
    return answer.status_code, await answer.aread()


async def test_a_prediction_finished_within_the_sync_wait_is_the_answer() -> None:
    done = prediction("succeeded", output=["Hi"])
    network = Network({("POST", CREATE): [json(201, done)]})

    assert await send(network, creation()) == (200, orjson.dumps(done))
    assert network.calls() == [("POST", CREATE)]


async def test_a_prediction_still_running_is_polled_with_the_credential_until_it_ends() -> None:
    done = prediction("succeeded", output=["Hi"])
    network = Network(
        {
            ("POST", CREATE): [json(201, prediction("starting"))],
            ("GET", URLS["get"]): [json(200, prediction("processing")), json(200, done)],
        }
    )
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    answer = await transport(network, sleep).handle_async_request(creation())

    assert (answer.status_code, await answer.aread()) == (200, orjson.dumps(done))
    assert network.calls() == [("POST", CREATE), ("GET", URLS["get"]), ("GET", URLS["get"])]
    polls = network.sent[1:]
    assert all(poll.headers["authorization"] == "Bearer r8_key" for poll in polls)
    assert all("prefer" not in poll.headers and "content-type" not in poll.headers for poll in polls)
    assert waits == [0.25, 0.375]


@pytest.mark.parametrize("status", ["failed", "canceled"])
async def test_a_prediction_that_did_not_succeed_is_an_error_answer_carrying_it(status: str) -> None:
    ended = prediction(status, error="CUDA out of memory")
    network = Network({("POST", CREATE): [json(201, prediction("starting"))], ("GET", URLS["get"]): [json(200, ended)]})

    assert await send(network, creation()) == (FAILED_PREDICTION_STATUS, orjson.dumps(ended))


async def test_replicates_own_error_answers_pass_through() -> None:
    throttled = {"title": "Request was throttled.", "detail": "Try again in 1 second.", "status": 429}
    network = Network({("POST", CREATE): [json(429, throttled)]})

    assert await send(network, creation()) == (429, orjson.dumps(throttled))


async def test_a_failed_poll_passes_through() -> None:
    gone = {"title": "Not found", "detail": "The requested resource could not be found.", "status": 404}
    network = Network({("POST", CREATE): [json(201, prediction("starting"))], ("GET", URLS["get"]): [json(404, gone)]})

    assert await send(network, creation()) == (404, orjson.dumps(gone))


async def test_a_stream_is_read_from_its_url_on_a_sibling_host() -> None:
    network = Network(
        {
            ("POST", CREATE): [json(201, prediction("starting"))],
            ("GET", URLS["stream"]): [
                httpx.Response(200, content=EVENTS, headers={"content-type": "text/event-stream"})
            ],
        }
    )

    assert await send(network, creation(stream=True)) == (200, EVENTS)
    follow = network.sent[1]
    assert (follow.headers["accept"], follow.headers["authorization"]) == ("text/event-stream", "Bearer r8_key")


async def test_a_model_that_does_not_stream_is_polled_and_written_as_its_stream() -> None:
    urls = {key: value for key, value in URLS.items() if key != "stream"}
    done = prediction("succeeded", urls=urls, output=["Line one", "\nline two"])
    network = Network(
        {("POST", CREATE): [json(201, {**done, "status": "starting"})], ("GET", URLS["get"]): [json(200, done)]}
    )

    status, events = await send(network, creation(stream=True))

    assert status == 200
    assert events == b"event: output\ndata: Line one\ndata: line two\n\nevent: done\ndata: {}\n\n"


@pytest.mark.parametrize(
    "elsewhere",
    ["https://attacker.test/v1/streams/p1", "http://streaming.api.replicate.test/v1/streams/p1", "not a url", ""],
)
async def test_a_stream_url_off_the_service_is_not_followed(elsewhere: str) -> None:
    network = Network(
        {
            ("POST", CREATE): [json(201, prediction("starting", urls={**URLS, "stream": elsewhere}))],
            ("POST", URLS["cancel"]): [json(200, prediction("canceled"))],
            ("GET", URLS["get"]): [json(200, prediction("succeeded", output=["Hi"]))],
        }
    )

    status, body = await send(network, creation(stream=True))
    await asyncio.sleep(0)

    assert all("attacker" not in url and not url.startswith("http:") for _, url in network.calls())
    if not elsewhere:
        # No stream URL to speak of: the prediction is polled and written as a stream.
        assert (status, body) == (200, b"event: output\ndata: Hi\n\nevent: done\ndata: {}\n\n")
    else:
        assert status == 502
        assert "did not follow" in orjson.loads(body)["detail"]
        assert ("POST", URLS["cancel"]) in network.calls()


async def test_a_poll_url_on_another_address_is_not_followed() -> None:
    network = Network({("POST", "http://127.0.0.1:8000/v1/predictions"): [json(201, prediction("starting"))]})
    request = httpx.Request("POST", "http://127.0.0.1:8000/v1/predictions", content=b"{}")

    status, body = await send(network, request)

    assert status == 502
    assert "no URL on its own service" in orjson.loads(body)["detail"]


class Endless(httpx.AsyncByteStream):
    """An upstream stream that sends its chunks and then keeps the connection open without a word."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> Any:
        for chunk in self.chunks:
            yield chunk
        await asyncio.Event().wait()


async def test_a_stream_closed_before_it_ended_cancels_the_prediction() -> None:
    network = Network(
        {
            ("POST", CREATE): [json(201, prediction("starting"))],
            ("GET", URLS["stream"]): [httpx.Response(200, stream=Endless(b"event: output\ndata: Hi\n\n"))],
            ("POST", URLS["cancel"]): [json(200, prediction("canceled"))],
        }
    )
    answer = await transport(network).handle_async_request(creation(stream=True))
    first = await anext(answer.aiter_raw())

    await answer.aclose()
    await asyncio.sleep(0.01)

    assert first == b"event: output\ndata: Hi\n\n"
    assert network.calls()[-1] == ("POST", URLS["cancel"])


@pytest.mark.parametrize("done", [b"event: done\ndata: {}\n\n", b"event:done\ndata: {}\n\n"])
async def test_a_stream_closed_once_its_done_event_is_in_is_not_canceled(done: bytes) -> None:
    # Replicate may keep the connection open after `done`: the relay closes the stream there, not at its end.
    network = Network(
        {
            ("POST", CREATE): [json(201, prediction("starting"))],
            ("GET", URLS["stream"]): [httpx.Response(200, stream=Endless(b"event: output\ndata: Hi\n\n", done))],
            ("POST", URLS["cancel"]): [json(200, prediction("canceled"))],
        }
    )
    predictions = transport(network)
    answer = await predictions.handle_async_request(creation(stream=True))
    read = [chunk async for chunk in _until_done(answer)]

    await answer.aclose()
    await predictions.aclose()  # lets any cancellation on its way reach the network

    assert read[-1] == done
    assert ("POST", URLS["cancel"]) not in network.calls()


async def test_a_stream_read_to_its_end_is_not_canceled() -> None:
    network = Network(
        {
            ("POST", CREATE): [json(201, prediction("starting"))],
            ("GET", URLS["stream"]): [httpx.Response(200, content=b"event: output\ndata: Hi\n\n")],
            ("POST", URLS["cancel"]): [json(200, prediction("canceled"))],
        }
    )
    predictions = transport(network)
    answer = await predictions.handle_async_request(creation(stream=True))

    await answer.aread()
    await answer.aclose()
    await predictions.aclose()

    assert ("POST", URLS["cancel"]) not in network.calls()


async def _until_done(answer: httpx.Response) -> AsyncIterator[bytes]:
    async for chunk in answer.aiter_raw():
        yield chunk
        if b"done" in chunk:
            return


async def test_polling_given_up_on_cancels_the_prediction() -> None:
    network = Network(
        {
            ("POST", CREATE): [json(201, prediction("starting"))],
            ("GET", URLS["get"]): [json(200, prediction("processing"))],
            ("POST", URLS["cancel"]): [json(200, prediction("canceled"))],
        }
    )

    async def slow(_seconds: float) -> None:
        await asyncio.sleep(0.01)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await transport(network, slow).handle_async_request(creation())
    await asyncio.sleep(0.01)

    assert network.calls()[-1] == ("POST", URLS["cancel"])


async def test_other_requests_go_straight_to_the_network() -> None:
    network = Network({("GET", f"{API}/v1/models"): [json(200, {"results": []})]})

    assert await send(network, httpx.Request("GET", f"{API}/v1/models")) == (200, b'{"results":[]}')
