"""Request-body limits shared by the Serve apps (standard library + Starlette only).

Lives apart from ``workloads/serve/app.py`` so that a service can refuse oversized bodies without
importing (and shipping) the digits classifier: the catalog ships every module a workload imports.
"""

from __future__ import annotations

from starlette.requests import Request


class BadRequestError(ValueError):
    """A client error, answered with ``status`` and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class BodyTooLargeError(ValueError):
    """The request body exceeds the limit given to :func:`read_body_limited`."""


async def read_body_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with :class:`BodyTooLargeError` as soon as it exceeds ``limit``.

    A declared ``Content-Length`` over the limit is refused before a byte is read; a body sent
    without one (chunked) is read in chunks and refused as soon as the limit is passed. An
    unparsable ``Content-Length`` is a :class:`BadRequestError`.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadRequestError(f"invalid Content-Length header {declared!r}") from None
        if length > limit:
            raise BodyTooLargeError(f"body of {length} bytes exceeds the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
