"""ASGI middleware in front of every route: the bearer token and the request body limit.

Pure ASGI (no ``BaseHTTPMiddleware``) so the predict hot path pays a few microseconds. The body
limit is checked on ``Content-Length`` and again on the bytes actually received, so a chunked or
lying client is cut off at the limit too.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.serve.responses import send_error

OPEN_PATHS = frozenset({"/healthz"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="orchard"'}


class BodyTooLarge(Exception):
    pass


class Guard:
    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self._expected = None if token is None else f"Bearer {token}".encode()
        self._max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        auth = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"authorization":
                auth = value
        if self._refused(scope["path"], auth):
            why = "a wrong token" if auth else "no Authorization header"
            await send_error(
                send,
                401,
                f"expected 'Authorization: Bearer <token>'. Received: {why}",
                "Authorization",
                CHALLENGE,
            )
            return
        if length is not None:
            if not length.isdigit():
                await send_error(send, 400, "expected a decimal Content-Length", "Content-Length")
                return
            if int(length) > self._max:
                await self._too_large(send, f"{int(length)} bytes (Content-Length)")
                return
        await self._limited(scope, receive, send)

    def _refused(self, path: str, auth: bytes) -> bool:
        if self._expected is None or path in OPEN_PATHS:
            return False
        return not hmac.compare_digest(auth, self._expected)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._too_large(send, f"more than {self._max} bytes (streamed)")

    async def _too_large(self, send: Send, received: str) -> None:
        await send_error(
            send, 413, f"expected a body of at most {self._max} bytes. Received: {received}", "body"
        )
