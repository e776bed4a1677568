"""Request-size limits and client errors shared by every Serve app of the catalog.

Why a module of its own: each Serve app (``serve``, ``image-serve``, ``llm-serve``) must refuse an
oversized body *before* reading it and answer client mistakes with a 4xx, never a 500. Importing
one app from another to reuse this would also import (and bind) that app's deployment, so the
shared part lives here, with only Starlette as a dependency.
"""

from __future__ import annotations

from starlette.requests import Request


class BadRequestError(ValueError):
    """A client error, answered with ``status`` and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class BodyTooLargeError(ValueError):
    """The request body exceeds the app's byte limit."""


async def read_body_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with :class:`BodyTooLargeError` as soon as it exceeds ``limit``.

    A declared ``Content-Length`` over the limit is refused before a byte is read; a body sent
    without one (chunked) is read in chunks and refused as soon as the limit is passed.
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


def route_path(request: Request) -> str:
    """The request path relative to the app's route prefix, normalised to ``/a/b`` form."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    path = request.url.path
    if root and path.startswith(root):
        path = path[len(root) :]
    return "/" + path.strip("/")
