"""Progress of long training steps: per-epoch lines or a bar, and rows done for long loops.

:class:`EpochProgress` reports the epochs of a run. On an interactive terminal a bar over
the epochs shows the live loss and the latest evaluation in its postfix. Elsewhere
(Airflow task logs, CI, ``nohup``) a bar is noise, so each epoch is one ``logging`` INFO
line of logger ``training.progress`` instead, saying what each number is::

    retriever lightgcn epoch 12/300: train softmax loss 0.1234, val recall_at_20 0.1500, 3.2 s

(the validation metric is the latest evaluation's, with its epoch when that was an
earlier one; the time is the epoch's own, evaluation included).

:class:`RateLog` and :func:`heartbeat` report steps that can take more than a few
seconds to the caller's logger: rows done of the total with the rate and an estimate of
the time left, or, for one call that cannot say how far it is, that it is still running.
Steps that end within a few seconds log nothing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator

from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class EpochProgress:
    """Reports the epochs of one training run.

    Args:
        epochs: the last epoch of the run.
        start: epochs already done before this session (resumed runs). (default: ``0``)
        monitor: the evaluation metric to show. (default: ``"recall_at_20"``)
        bar: ``True`` for a tqdm bar, ``False`` for log lines, ``None`` for a bar exactly
            when stderr is a terminal. (default: ``None``)
        label: what is trained, first on each line (e.g. ``"retriever lightgcn"``).
            (default: ``"training"``)
        loss: the loss's name on each line (``"train softmax loss 0.41"``); empty for
            just ``"train loss"``. (default: ``""``)
    """

    def __init__(
        self,
        epochs: int,
        start: int = 0,
        monitor: str = "recall_at_20",
        bar: bool | None = None,
        label: str = "training",
        loss: str = "",
    ) -> None:
        self.epochs = epochs
        self.monitor = monitor
        self.label = label
        self.loss = f"train {loss} loss" if loss else "train loss"
        self.metric: float | None = None
        self.metric_epoch: int | None = None
        use_bar = sys.stderr.isatty() if bar is None else bar
        self._bar = (
            tqdm(total=epochs, initial=start, desc=label, unit="epoch", file=sys.stderr, dynamic_ncols=True)
            if use_bar
            else None
        )

    def update(self, epoch: int, loss: float, seconds: float, metrics: dict[str, float] | None = None) -> None:
        """Report a finished epoch (``metrics``: its evaluation, if it had one)."""
        if metrics is not None and self.monitor in metrics:
            self.metric, self.metric_epoch = float(metrics[self.monitor]), epoch
        if self._bar is not None:
            postfix = {"loss": f"{loss:.4f}"}
            if self.metric is not None:
                postfix[self.monitor] = f"{self.metric:.4f}"
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1)
            return
        shown = ""
        if self.metric is not None:
            shown = f", val {self.monitor} {self.metric:.4f}"
            if self.metric_epoch != epoch:
                shown += f" (epoch {self.metric_epoch})"
        log.info("%s epoch %d/%d: %s %.4f%s, %.1f s", self.label, epoch, self.epochs, self.loss, loss, shown, seconds)

    def close(self) -> None:
        """Finish the bar (log lines need no closing)."""
        if self._bar is not None:
            self._bar.close()


class RateLog:
    """Rows done of a long loop as INFO lines of ``logger``: done / total, rate, time left.

    Nothing is logged before ``after`` seconds (a short loop stays silent), then at most
    one line every ``every`` seconds, e.g. ``ranker evaluation: candidates for 8,192/22,337
    users (37%), 610 users/s, ETA 23 s``; :meth:`close` adds a last line when any was logged.

    Args:
        logger: the logger of the module doing the work.
        what: the step, first on each line (e.g. ``"ranker evaluation: candidates for"``).
        total: the number of units the loop covers.
        unit: what is counted. (default: ``"rows"``)
        every: seconds between lines. (default: ``10``)
        after: seconds before the first line. (default: ``5``)
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        total: int,
        unit: str = "rows",
        *,
        every: float = 10.0,
        after: float = 5.0,
    ) -> None:
        self.logger, self.what, self.total, self.unit = logger, what, total, unit
        self.every, self.after = every, after
        self.started = time.perf_counter()
        self.last: float | None = None
        self.done = 0

    def update(self, done: int) -> None:
        """``done`` units of :attr:`total` are finished."""
        self.done = done
        now = time.perf_counter()
        elapsed = now - self.started
        due = elapsed >= self.after if self.last is None else now - self.last >= self.every
        if not due or done >= self.total or done <= 0:
            return
        self.last = now
        rate = done / elapsed
        self.logger.info(
            "%s %s/%s %s (%.0f%%), %s %s/s, ETA %.0f s",
            self.what,
            f"{done:,}",
            f"{self.total:,}",
            self.unit,
            100 * done / self.total,
            f"{rate:,.0f}",
            self.unit,
            (self.total - done) / rate,
        )

    def close(self) -> None:
        """A last line with the total time, when the loop was long enough to log any."""
        if self.last is None:
            return
        elapsed = time.perf_counter() - self.started
        self.logger.info(
            "%s %s %s done in %.1f s (%s %s/s)",
            self.what,
            f"{self.done:,}",
            self.unit,
            elapsed,
            f"{self.done / max(elapsed, 1e-9):,.0f}",
            self.unit,
        )


@contextlib.contextmanager
def heartbeat(logger: logging.Logger, what: str, every: float = 15.0) -> Iterator[None]:
    """Log ``what: still running, N s`` every ``every`` seconds while the block runs.

    For one call that cannot report how far it is (a point-in-time join in Feast): the task
    log then shows that it is alive and for how long, from a daemon thread.
    """
    stop = threading.Event()
    started = time.perf_counter()

    def beat() -> None:
        while not stop.wait(every):
            logger.info("%s: still running, %.0f s", what, time.perf_counter() - started)

    thread = threading.Thread(target=beat, name="graphrec-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
