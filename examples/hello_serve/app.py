"""Your own Ray Serve app, deployed from stack config (a sample to copy).

In ``Pulumi.<stack>.yaml``::

    ray-on-eks:rayServices:
      - name: hello
        code: examples/hello_serve
        importPath: app:deployment

The directory ships in the workloads ConfigMap and is first on PYTHONPATH, so Serve imports
``app:deployment``; ``python -m workloads serve-url hello --stack S`` then reaches it.
"""

from __future__ import annotations

from ray import serve
from starlette.requests import Request


@serve.deployment
class Hello:
    """Answers every request with a greeting."""

    async def __call__(self, request: Request) -> dict[str, str]:
        """Greet the caller."""
        return {"message": f"hello from your own Serve app at {request.url.path}"}


deployment = Hello.bind()  # type: ignore[attr-defined]
