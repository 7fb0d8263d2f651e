"""The Airflow UI, driven in headless Chromium: sign in, trigger graphrec_nightly from its
trigger form with Params set in the form, and check through the REST API that the run
succeeds with exactly those values in its conf.

Runs against the embedded launcher (API server, scheduler, DAG processor on SQLite) on a
tiny clean simulated lake. Skipped (with how to fix it) when no Chromium is installed;
any UI problem fails the test, with a screenshot under the test's tmp dir.
"""

from __future__ import annotations

import time

import pytest

from graphrec.airflow_local import LocalAirflow
from graphrec.settings import Settings
from graphrec.sources.simulator import SimulationConfig, simulate
from tests.services.airflow_ui import (
    launch,
    login,
    new_run_id,
    simple_auth_password,
    skip_without_chromium,
    trigger_from_form,
    wait_for_run,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

DAG_ID = "graphrec_nightly"
CONFIG = SimulationConfig(
    n_users=300, n_items=150, days=4, events_per_day=1500, drift_day=None, corrupt_day=None, seed=7
)


@pytest.fixture
def chromium() -> str:
    return skip_without_chromium()


@pytest.fixture
def sync_playwright(chromium):
    module = pytest.importorskip(
        "playwright.sync_api", reason="the browser tests need Playwright: pip install -e '.[test]'"
    )
    return module.sync_playwright


@pytest.fixture
def settings(tmp_path) -> Settings:
    """A clean simulated lake; every day but the last already curated (the history the
    nightly run trains on), the last one landed and waiting for the nightly run."""
    from validation import validate_partition

    settings = Settings(home=tmp_path / "home")
    simulate(CONFIG, settings.landing_dir)
    for index in range(1, CONFIG.days):
        outcome = validate_partition(settings, CONFIG.day(index), profile="backfill")
        assert outcome.status == "curated", outcome.message()
    return settings


def test_trigger_nightly_from_the_ui_form(sync_playwright, settings, tmp_path):
    ds = CONFIG.day(CONFIG.days).isoformat()
    form = {"ds": ds, "window_days": CONFIG.days, "epochs": 3}
    artifacts = tmp_path / "ui"
    started = time.monotonic()

    with LocalAirflow(settings) as airflow:
        client = airflow.client
        airflow.wait_for_dag(DAG_ID)
        # Unpaused, or a manual run stays queued. The scheduler may start its own run for
        # the latest 02:00 slot (no partition: it skips); let it finish first.
        client.set_paused(DAG_ID, False)
        client.wait_idle(DAG_ID, timeout=300)
        before = {r["dag_run_id"] for r in client.runs(DAG_ID)}

        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                login(page, airflow.base_url, "admin", simple_auth_password(settings.airflow_home), artifacts=artifacts)
                ui_run_id = trigger_from_form(page, airflow.base_url, DAG_ID, form, artifacts=artifacts)
            finally:
                browser.close()

        run_id = new_run_id(client, DAG_ID, before)
        assert run_id == ui_run_id, (run_id, ui_run_id)
        run = wait_for_run(client, DAG_ID, run_id, timeout=600)
        states = {ti["task_id"]: ti["state"] for ti in client.task_instances(DAG_ID, run_id)}
        train = client.xcom(DAG_ID, run_id, "train")

    assert run["state"] == "success", (run, states, airflow.log_dir)
    assert set(states.values()) <= {"success", "skipped"}, states
    # The form set these: they are in the run's conf with the form's (typed) values.
    conf = run["conf"]
    assert {key: conf.get(key) for key in form} == form, conf
    # ... and the tasks used them: the day's partition was validated, featurized and trained on.
    for task in ("resolve_day", "validate", "features", "train"):
        assert states[task] == "success", states
    assert train["epochs_run"] <= 3, train
    print(f"UI-triggered run {run_id}: {run['state']} in {time.monotonic() - started:.0f} s; tasks {states}")
