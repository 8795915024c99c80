"""One model call for many concurrent requests: what lets ``serve`` answer many callers at once.

A project's ``predict`` reads and preprocesses its input, calls ``model.predict_on_batch`` and
formats the answer. :class:`BatchingModel` stands in for the model there: each request runs the
project's own ``predict`` in its own thread (decoding and preprocessing in parallel), and its
``predict_on_batch`` only queues the request's rows and waits. One worker thread gathers the
queued rows for at most ``max_wait_s`` (or until ``max_batch`` rows, or until every request in
progress is waiting for the model: then nobody else is coming) and answers them with one batched
call of the real model, handing each request back its own rows. A failed model call fails only
the requests of that batch; an input the project refuses never reaches the queue.

Anything else a project asks of the model (its input shape, its name) is the real model's; the
whole-model calls ``predict`` and ``model(x)`` run unbatched, one at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.kit.splits import is_structured


@dataclass
class _Pending:
    """One request's rows, waiting for their share of a batched call."""

    rows: np.ndarray
    arrived: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class BatchingModel:
    """A model whose ``predict_on_batch`` calls from many threads are answered together.

    Args:
        model: the model a project's ``predict`` queries (its ``serving_model``, if it has one).
        max_batch: the most rows one model call takes (a larger single request runs alone).
        max_wait_s: how long the first queued request waits for others to join it.
        runner: what answers a batched call, when not the model's own ``predict_on_batch``
            (the same model through ONNX Runtime: :func:`common.serving.export.onnx_runner`).
    """

    # The project's serving_model hook returns a model marked so as it is: this one already
    # stands for the served model.
    is_serving_model = True

    def __init__(
        self,
        model: Any,
        max_batch: int = 64,
        max_wait_s: float = 0.005,
        runner: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        self.model = model
        self.runner = runner or model.predict_on_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.calls = 0  # Batched model calls made, and the rows they answered: for the curious.
        self.rows = 0
        self._queue: list[_Pending] = []
        self._active = 0
        self._condition = threading.Condition()
        self._whole_model = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="batching-model", daemon=True)
        self._worker.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    @contextmanager
    def request(self) -> Iterator[None]:
        """Marks a request in progress, so the worker knows how many callers may still join."""
        with self._condition:
            self._active += 1
        try:
            yield
        finally:
            with self._condition:
                self._active -= 1
                self._condition.notify()

    def predict_on_batch(self, x: Any) -> Any:
        """The model's answer for ``x``'s rows, computed in one call with other requests' rows.
        The inputs of a model with several (a dict or list of arrays) are answered alone."""
        if is_structured(x):
            with self._whole_model:
                return self.model.predict_on_batch(x)
        pending = _Pending(np.asarray(x))
        if pending.rows.ndim == 0:
            raise ValueError("predict_on_batch takes a batch: an array whose first axis counts its inputs")
        with self._condition:
            self._queue.append(pending)
            self._condition.notify()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        with self._whole_model:
            return self.model.predict(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._whole_model:
            return self.model(*args, **kwargs)

    def _work(self) -> None:
        while True:
            with self._condition:
                while not self._queue:
                    self._condition.wait()
                deadline = self._queue[0].arrived + self.max_wait_s
                while (
                    sum(len(item.rows) for item in self._queue) < self.max_batch
                    and len(self._queue) < self._active
                    and (left := deadline - time.monotonic()) > 0
                ):
                    self._condition.wait(left)
                batch = self._take()
            self._answer(batch)

    def _take(self) -> list[_Pending]:
        """The first request, and after it the queued ones whose rows stack with its rows, up to
        ``max_batch`` rows in all."""
        first = self._queue[0]
        batch, rows, kept = [first], len(first.rows), []
        for item in self._queue[1:]:
            fits = item.rows.shape[1:] == first.rows.shape[1:] and item.rows.dtype == first.rows.dtype
            if fits and rows + len(item.rows) <= self.max_batch:
                batch.append(item)
                rows += len(item.rows)
            else:
                kept.append(item)
        self._queue = kept
        return batch

    def _answer(self, batch: list[_Pending]) -> None:
        import keras  # The model is a Keras model: its outputs may be a structure of arrays.

        try:
            stacked = batch[0].rows if len(batch) == 1 else np.concatenate([item.rows for item in batch])
            outputs = self.runner(stacked)
            self.calls += 1
            self.rows += len(stacked)
            start = 0
            for item in batch:
                stop = start + len(item.rows)
                item.result = keras.tree.map_structure(
                    lambda output, start=start, stop=stop: np.asarray(output)[start:stop], outputs
                )
                start = stop
        except Exception as error:  # The model's failure is each waiting request's failure.
            for item in batch:
                item.error = error
        for item in batch:
            item.done.set()
