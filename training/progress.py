"""Per-epoch progress of a training run: a tqdm bar on a terminal, log lines elsewhere.

On an interactive terminal a bar over the epochs shows the live loss and the latest
evaluation in its postfix. Elsewhere (Airflow task logs, CI, ``nohup``) a bar is noise,
so each epoch is one ``logging`` INFO line of logger ``training.progress`` instead::

    epoch 12/300 loss 0.1234 recall_at_20 0.1500 3.2 s

(the metric is the latest evaluation's, the time the epoch's own, evaluation included).
"""

from __future__ import annotations

import logging
import sys

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
    """

    def __init__(self, epochs: int, start: int = 0, monitor: str = "recall_at_20", bar: bool | None = None) -> None:
        self.epochs = epochs
        self.monitor = monitor
        self.metric: float | None = None
        use_bar = sys.stderr.isatty() if bar is None else bar
        self._bar = (
            tqdm(total=epochs, initial=start, desc="training", unit="epoch", file=sys.stderr, dynamic_ncols=True)
            if use_bar
            else None
        )

    def update(self, epoch: int, loss: float, seconds: float, metrics: dict[str, float] | None = None) -> None:
        """Report a finished epoch (``metrics``: its evaluation, if it had one)."""
        if metrics is not None and self.monitor in metrics:
            self.metric = float(metrics[self.monitor])
        if self._bar is not None:
            postfix = {"loss": f"{loss:.4f}"}
            if self.metric is not None:
                postfix[self.monitor] = f"{self.metric:.4f}"
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1)
            return
        shown = f" {self.monitor} {self.metric:.4f}" if self.metric is not None else ""
        log.info("epoch %d/%d loss %.4f%s %.1f s", epoch, self.epochs, loss, shown, seconds)

    def close(self) -> None:
        """Finish the bar (log lines need no closing)."""
        if self._bar is not None:
            self._bar.close()
