"""Run notes: one line per stage, hand-written lines kept, within Airflow's limit."""

from __future__ import annotations

from types import SimpleNamespace

from app.airflow_notes import NOTE_LIMIT, NoteWriter, merge_run_note
from graphrec.settings import Settings


def test_each_stage_keeps_one_line_the_verdict_first():
    note = merge_run_note(None, "canary", "rejected v7: no_regression")
    note = merge_run_note(note, "data", "curated 4,012 rows")
    note = merge_run_note(note, "canary", "promoted v8 (R@20 0.197 vs champion 0.190)")
    assert note == "canary: promoted v8 (R@20 0.197 vs champion 0.190)\ndata: curated 4,012 rows"


def test_an_operators_own_lines_survive_and_the_note_fits_airflows_limit():
    note = merge_run_note("checked by Ana: upstream fixed", "drift", "watch: category (watch)")
    assert note == "drift: watch: category (watch)\nchecked by Ana: upstream fixed"
    assert len(merge_run_note(None, "data", "x" * 5000)) == NOTE_LIMIT
    assert merge_run_note(None, "data", "two\nlines") == "data: two lines"


def test_without_an_api_server_a_note_is_skipped_not_raised(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    context = {"dag_run": SimpleNamespace(dag_id="d", run_id="r"), "ti": SimpleNamespace(task_id="t")}
    assert NoteWriter(Settings(home=tmp_path)).annotate(context, "data", "curated") is False
    # An API server that is not there: logged, not raised.
    writer = NoteWriter(Settings(home=tmp_path, airflow={"admin_password": "x"}), base_url="http://127.0.0.1:9")
    assert writer.annotate(context, "data", "curated") is False
