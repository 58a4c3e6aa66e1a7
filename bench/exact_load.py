"""Send exactly N chat completions to Portico over C keep-alive connections, and check every answer.

    python bench/exact_load.py N C STREAM KEY [PORT]

wrk runs for a time, not a count; `bench/instructions.sh` needs a fixed number of requests to
divide by. Each answer must be a 200 holding the marker of a complete answer (`"choices"`, or
`data: [DONE]` when streamed), as the harness's wrk script checks. Exits 1 if any was not.
"""

from __future__ import annotations

import asyncio
import sys

BODY = (
    '{"model":"bench-model","messages":[{"role":"system","content":"You are a concise assistant."},'
    '{"role":"user","content":"In one sentence, what does an LLM gateway add to a request?"}],'
    '"max_tokens":64,"temperature":0%s}'
)
STREAMED = ',"stream":true,"stream_options":{"include_usage":true}'


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lowered = head.lower()
    if b"content-length:" in lowered:
        length = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
        return head, await reader.readexactly(length)
    body = bytearray()
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readexactly(2)  # the CRLF after the last, empty chunk
    return head, bytes(body)


async def load(total: int, connections: int, stream: bool, key: str, port: int) -> int:
    body = (BODY % (STREAMED if stream else "")).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s" % (key.encode(), len(body), body)
    )
    marker = b"data: [DONE]" if stream else b'"choices"'
    left, bad = [total], [0]

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while left[0] > 0:
            left[0] -= 1
            writer.write(request)
            head, answer = await read_answer(reader)
            if not head.startswith(b"HTTP/1.1 200 ") or marker not in answer:
                bad[0] += 1
        writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return bad[0]


def main(argv: list[str]) -> int:
    if len(argv) < 5:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    total, connections, stream, key = int(argv[1]), int(argv[2]), argv[3] == "1", argv[4]
    port = int(argv[5]) if len(argv) > 5 else 8000
    bad = asyncio.run(load(total, connections, stream, key, port))
    if bad:
        print(f"{bad} of {total} answers were not a complete 200", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
