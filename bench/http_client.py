"""A minimal HTTP/1.1 keep-alive client on asyncio, as a browser socket uses one.

Plain asyncio protocol code rather than an HTTP library: the load generator shares two cores
with the server, and its own cost per request must stay small and alike for every variant.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from devtools.servers import LOOPBACK

REQUEST_TIMEOUT_S = 10.0
BROWSER_HEADERS = (
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) mission-control-bench\r\n"
    "Accept: application/json\r\n"
    "Accept-Language: en-GB,en;q=0.9\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
)


@dataclass(frozen=True)
class Answer:
    status: int
    size: int  # bytes on the wire: status line, headers and body
    body: bytes


class _AnswerReader(asyncio.Protocol):
    """Splits the byte stream into responses (Content-Length framed; 204 has no body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._closed: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._deliver()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = exc or ConnectionResetError("server closed the connection")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self._closed)

    def expect(self) -> asyncio.Future[Answer]:
        if self._closed is not None:
            raise ConnectionResetError(str(self._closed))
        self._waiter = asyncio.get_running_loop().create_future()
        self._deliver()
        return self._waiter

    def _deliver(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).split(b"\r\n")
        status = int(head[0][9:12])
        length = 0
        closing = False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                closing = value.strip().lower() == b"close"
            elif name == b"transfer-encoding":
                waiter.set_exception(ValueError("chunked answers are not expected here"))
                return
        if status in (204, 304):
            length = 0
        total = end + 4 + length
        if len(self._buffer) < total:
            return
        body = bytes(self._buffer[end + 4 : total])
        del self._buffer[:total]
        if closing:  # the server ends the connection: the next request opens a new one
            self._closed = ConnectionResetError("the server closed the connection")
        waiter.set_result(Answer(status, total, body))


class Connection:
    """One keep-alive connection; requests on it run one at a time, as on a browser socket."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: _AnswerReader | None = None
        self.host_header = f"Host: {LOOPBACK}:{port}\r\n"
        self.origin_header = f"Origin: http://{LOOPBACK}:{port}\r\n"

    async def _ensure(self) -> _AnswerReader:
        if self._reader is None or self._reader.transport is None or self._reader._closed:
            loop = asyncio.get_running_loop()
            _, reader = await loop.create_connection(_AnswerReader, LOOPBACK, self.port)
            self._reader = reader
        return self._reader

    async def send(self, raw: bytes) -> Answer:
        reader = await self._ensure()
        waiter = reader.expect()
        assert reader.transport is not None
        reader.transport.write(raw)
        try:
            return await asyncio.wait_for(waiter, REQUEST_TIMEOUT_S)
        except BaseException:
            self.close()  # an answer may still arrive: never read it as the next one's
            raise

    def get(self, path: str) -> bytes:
        return (f"GET {path} HTTP/1.1\r\n{self.host_header}{BROWSER_HEADERS}\r\n").encode()

    def post_json(self, path: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\n{self.host_header}{self.origin_header}{BROWSER_HEADERS}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def close(self) -> None:
        if self._reader is not None and self._reader.transport is not None:
            self._reader.transport.close()
        self._reader = None


async def get_once(port: int, path: str) -> tuple[int, bytes]:
    connection = Connection(port)
    try:
        answer = await connection.send(connection.get(path))
        return answer.status, answer.body
    finally:
        connection.close()
