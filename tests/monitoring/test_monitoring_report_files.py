"""The day's report files (monitoring.report_files): parseable, atomic, no stale leftovers;
each HTML report opens with the policy's decision, and no Evidently verdict contradicts it."""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path

import pandas as pd
import pytest

from monitoring.policy import decide
from monitoring.policy_state import MonitorState
from monitoring.report_files import (
    HEADER_ID,
    SERVED_FILE,
    SIGNALS_FILE,
    ReportHeader,
    read_signals,
    with_header,
    write_signal_report,
)
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


def test_each_report_opens_with_the_day_window_decision_and_why(drifted, policy, tmp_path):
    ds, reference = dt.date(2025, 1, 5), [dt.date(2025, 1, 1), dt.date(2025, 1, 2), dt.date(2025, 1, 3)]
    decision, _ = decide(policy, ds, list(drifted.signals.values()), MonitorState())
    assert decision.watch, decision.summary  # a drift's first day: soft signals on watch
    header = ReportHeader(decision, policy, reference, window=(dt.date(2025, 1, 1), dt.date(2025, 1, 4)))
    written = write_signal_report(drifted, tmp_path, header)

    for name in drifted.snapshots:
        page = Path(written[f"{name}.html"]).read_text()
        head, body = page.split("</head>", 1)
        assert body.lstrip().startswith("<body>") and body.index(HEADER_ID) < body.index('<div id="root_')
        header_html = body[body.index(HEADER_ID) : body.index('<div id="root_')]
        for part in (
            "2025-01-05",
            "2025-01-01 to 2025-01-03 (3 curated days)",
            "within the window 2025-01-01 to 2025-01-04",
            f"{decision.status.upper()}: {html.escape(decision.summary)}",
            "drift_policy.yaml (packaged default)",
            f"persistence_days {policy.persistence_days}",
        ):
            assert part in header_html, part
        for watched in decision.watch:
            verdict = decision.verdict(watched)
            assert html.escape(verdict.line) in header_html  # why: the policy's reading of the signal
            row = header_html[header_html.index(f">{watched}</td>") :].split("</tr>", 1)[0]
            assert "watch (1 of 2 days, not counted yet)" in row
            assert f"&gt;= {policy.rule(watched).threshold:.3g}" in row  # the policy's own threshold
        # No Evidently verdict: no tests (so no FAIL marks) and no "Data drift detected".
        assert json.loads(Path(written[f"{name}.json"]).read_text())["tests"] == []
        assert "FAIL" not in head and "drift detected" not in page.lower()
        assert "Drift score:" in head or name != "data"  # ValueDrift still shows its score


@pytest.mark.parametrize(
    ("page", "before"),
    [
        ("<!DOCTYPE html>\n<html><head></head>\n    <body>\n<div id='root'></div></body></html>", "<div id='root'>"),
        # a data block that mentions <body> on one line does not take the header
        ("<html><head><script>var d = {'x': '<body>'};</script></head>\n<body class='a'>\n<p>r</p>", "<p>r</p>"),
        ("<p>no body tag</p>", "<p>no body tag</p>"),
    ],
)
def test_the_header_goes_right_after_the_body_tag(page, before):
    out = with_header(page, "<div id='h'></div>")
    assert out.index("<div id='h'>") < out.index(before)
    assert out.replace("\n<div id='h'></div>\n", "", 1) == page
