"""The day's report files (monitoring.report_files): parseable, atomic, no stale leftovers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from monitoring.report_files import SERVED_FILE, SIGNALS_FILE, read_signals, write_signal_report
from monitoring.signals import SignalReport, compute_signals


def test_write_signal_report_writes_parseable_files_and_removes_stale_ones(ordinary, lake_days, tmp_path):
    written = write_signal_report(ordinary, tmp_path)
    expected = {f"{name}.{ext}" for name in ("data", "users", "model") for ext in ("html", "json")}
    assert set(written) == expected | {SIGNALS_FILE, SERVED_FILE}
    for name in ("data", "users", "model"):
        assert json.loads(Path(written[f"{name}.json"]).read_text())["metrics"]
        assert "<html" in Path(written[f"{name}.html"]).read_text()[:2000].lower()
    assert read_signals(Path(written[SIGNALS_FILE])) == ordinary.signals
    pd.testing.assert_frame_equal(pd.read_parquet(written[SERVED_FILE]), ordinary.served)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left

    without_model = compute_signals(lake_days["ordinary"], lake_days["reference"], lake_days["catalog"])
    write_signal_report(without_model, tmp_path)
    assert not (tmp_path / "model.html").exists() and not (tmp_path / SERVED_FILE).exists()


def test_a_report_that_fails_to_render_writes_nothing(ordinary, tmp_path):
    class Broken:
        def get_html_str(self, as_iframe: bool = False) -> str:
            raise RuntimeError("boom")

    report = SignalReport(ordinary.signals, ordinary.served, {**ordinary.snapshots, "quality": Broken()})
    with pytest.raises(RuntimeError, match="boom"):
        write_signal_report(report, tmp_path / "out")
    assert not (tmp_path / "out").exists()
