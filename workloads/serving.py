"""What every Serve app of the catalog does the same way: follow the newest exported model, batch.

* :class:`ModelWatcher` holds the model of a model directory and reloads it when training publishes
  a new one (``model.json`` is written last, so a changed ``model.json`` means a complete new
  model). A local path costs one ``stat`` per check; an ``s3://`` path is asked at most every
  :data:`REMOTE_RELOAD_CHECK_S`. A failed reload keeps serving the model already loaded.
* :class:`Batcher` wraps a batch function in ``@serve.batch`` inside a replica. Serve's batch queue
  belongs to the event loop it was first used on, so one is made per loop; called outside a replica
  (unit tests) it runs the same function on a batch of one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from workloads import storage
from workloads.model_store import META_FILE
from workloads.storage import Location, is_uri, join

REMOTE_RELOAD_CHECK_S = 1.0
"""How often an ``s3://`` model directory is asked whether ``model.json`` changed (a remote call)."""

T = TypeVar("T")
R = TypeVar("R")


class ModelWatcher:
    """The newest model in ``path``, loaded with ``load(path) -> (model, meta)``."""

    def __init__(
        self,
        path: Location,
        load: Callable[[Location], tuple[Any, Any]],
        *,
        errors: tuple[type[BaseException], ...],
        name: str = "model",
    ) -> None:
        self.path = path
        self._load = load
        self._errors = errors
        self._name = name
        self._remote = is_uri(path)
        self._lock = threading.Lock()
        self._loaded: tuple[int, Any, Any] | None = None  # (stamp of model.json, model, meta)
        self._error: str | None = None
        self._checked_at = 0.0

    @property
    def loaded(self) -> tuple[Any, Any] | None:
        """``(model, meta)`` of the model in use, ``None`` before the first successful load."""
        loaded = self._loaded
        return None if loaded is None else (loaded[1], loaded[2])

    @property
    def error(self) -> str | None:
        """Why no model is loaded (the last load error), ``None`` once one is."""
        return self._error

    def refresh(self, *, force: bool = True) -> None:
        """(Re)load when ``model.json`` changed since the last load.

        Without ``force`` a remote path is checked at most every :data:`REMOTE_RELOAD_CHECK_S`.
        """
        now = time.monotonic()
        recent = now - self._checked_at < REMOTE_RELOAD_CHECK_S
        if self._remote and not force and self._loaded is not None and recent:
            return
        self._checked_at = now
        try:
            stamp = storage.stamp(join(self.path, META_FILE))
        except OSError:
            stamp = None
        stamp = -1 if stamp is None else stamp
        if self._loaded is not None and self._loaded[0] == stamp:
            return
        with self._lock:
            if self._loaded is not None and self._loaded[0] == stamp:
                return
            try:
                model, meta = self._load(self.path)
            except self._errors as error:
                if self._loaded is None:
                    self._error = str(error)
                return
            self._loaded = (stamp, model, meta)
            self._error = None
            print(f"loaded {self._name} epoch {meta.epoch} from {self.path}", flush=True)


class Batcher(Generic[T, R]):
    """``await batcher(item)``: ``function`` over the items that queued together in a replica.

    ``function`` runs one call at a time (as under ``@serve.batch`` alone): a lone request that skips
    the batch queue and the queue's own batches take the same lock.
    """

    def __init__(
        self,
        function: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch_size: int,
        wait_timeout_s: float = 0.0,
    ) -> None:
        self._function = function
        self._max_batch_size = max_batch_size
        self._wait_timeout_s = wait_timeout_s
        self._per_loop: tuple[asyncio.AbstractEventLoop, Any, asyncio.Lock] | None = None
        # Calls under way on this replica (queued in the batch queue or in a direct call).
        self._in_flight = 0

    async def __call__(self, item: T) -> R:
        from ray import serve
        from ray.serve.exceptions import RayServeException

        try:
            serve.get_replica_context()
        except RayServeException:  # not in a replica: the same function, on a batch of one
            return (await self._function([item]))[0]
        _, batched, lock = self._for_running_loop()
        self._in_flight += 1
        try:
            # One turn of the event loop lets the requests that are already readable reach this point
            # too. A request still alone after it has nothing to batch with: it skips the batch queue's
            # task and futures. (Deciding without that turn would send every request of a busy
            # replica alone: the forward never yields, so the next request's handler would only start
            # after it.) With a wait timeout, every request waits in the queue as configured.
            await asyncio.sleep(0)
            if self._in_flight == 1 and self._wait_timeout_s == 0:
                async with lock:
                    return (await self._function([item]))[0]
            result: R = await batched(item)
            return result
        finally:
            self._in_flight -= 1

    def _for_running_loop(self) -> tuple[asyncio.AbstractEventLoop, Any, asyncio.Lock]:
        """The ``@serve.batch`` wrapper and the call lock of the running loop (made on first use)."""
        from ray import serve

        loop = asyncio.get_running_loop()
        if self._per_loop is None or self._per_loop[0] is not loop:
            function = self._function
            lock = asyncio.Lock()

            async def batch(items: list[T]) -> list[R]:
                async with lock:
                    return await function(items)

            wrapped = serve.batch(
                max_batch_size=self._max_batch_size, batch_wait_timeout_s=self._wait_timeout_s
            )(batch)
            self._per_loop = (loop, wrapped, lock)
        return self._per_loop
