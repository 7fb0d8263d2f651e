"""Drive Airflow 3's web UI in headless Chromium (Playwright, sync API), for browser tests.

Import in tests as ``from tests.services.airflow_ui import ...`` (pytest's ``pythonpath``
is the project root). Playwright is imported lazily, so :func:`chromium_path` and
:func:`skip_without_chromium` work without it.

Every UI step that fails raises ``AssertionError`` naming the step and the page's URL, after
saving a screenshot and the page's HTML under ``artifacts`` (the test's ``tmp_path``) when
one is given. DOM facts these helpers rely on (Airflow 3.3 React UI, SimpleAuthManager):

* login page ``/auth/login``: fields labelled ``Username`` / ``Password``, button ``Sign in``;
* DAG page ``/dags/<dag_id>``: button with test id ``trigger-dag-button`` (text ``Trigger``);
* the trigger dialog (role ``dialog``), section ``Run Parameters`` (an accordion button):
  one field per DAG Param, named ``element_<param>`` (the label's ``for`` does not always
  point at it, so the name is the reliable handle): integers are ``spinbutton`` inputs, a
  ``format: date`` string is ``<input type=date>``, booleans a switch (``<label>`` around a
  visually hidden checkbox), enums a react-select ``combobox`` next to a hidden input;
* the submit button has test id ``trigger-dag-submit`` and stays disabled while the form
  has an error, e.g. a required Param left empty;
* submitting POSTs ``/api/v2/dags/<dag_id>/dagRuns``; its response names the new run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

SKIP_MESSAGE = (
    "no Chromium found: install Debian's chromium (`sudo apt-get install -y chromium`) "
    "or set GRAPHREC_CHROMIUM to a Chromium binary"
)
# The test machines have no outbound network: keep Chromium from calling Google.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
TERMINAL_RUN_STATES = ("success", "failed")

ParamValue = str | int | bool


# --------------------------------------------------------------------------- browser


def chromium_path() -> str | None:
    """The Chromium binary to drive: ``GRAPHREC_CHROMIUM`` if set (a path or a command name),
    else the first of chromium / chromium-browser / google-chrome on ``PATH``; None if none."""
    override = os.environ.get("GRAPHREC_CHROMIUM", "").strip()
    if override:
        found = shutil.which(override)
        if found:
            return found
        path = Path(override).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def skip_without_chromium() -> str:
    """The Chromium binary, or skip the calling test (or fixture) with :data:`SKIP_MESSAGE`."""
    path = chromium_path()
    if path is None:
        pytest.skip(SKIP_MESSAGE)
    return path


def launch(playwright: Any, **kwargs: Any) -> Any:
    """A headless Chromium ``Browser`` from the system binary (Playwright downloads nothing)."""
    executable = kwargs.pop("executable_path", None) or chromium_path()
    if executable is None:
        raise RuntimeError(SKIP_MESSAGE)
    return playwright.chromium.launch(
        executable_path=executable, headless=True, args=[*CHROMIUM_ARGS, *kwargs.pop("args", [])], **kwargs
    )


# --------------------------------------------------------------------------- failures


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "step"


def save_page(page: Any, artifacts: Path | None, name: str) -> str:
    """Save a full-page screenshot and the HTML under ``artifacts``; describe where (or why not)."""
    if artifacts is None:
        return "no screenshot (no artifacts dir given)"
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / f"{_slug(name)}.png"
    try:
        page.screenshot(path=str(shot), full_page=True)
        (artifacts / f"{_slug(name)}.html").write_text(page.content())
    except Exception as exc:  # the page may be gone; the original error matters more
        return f"screenshot failed: {exc}"
    return f"screenshot: {shot}"


@contextlib.contextmanager
def ui_step(page: Any, what: str, artifacts: Path | None) -> Iterator[None]:
    """Turn any Playwright error or failed check inside into an AssertionError with the URL."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        yield
    except (PlaywrightError, AssertionError) as exc:
        where = save_page(page, artifacts, f"failed-{what}")
        detail = str(exc).strip().splitlines()
        raise AssertionError(f"UI step '{what}' failed at {page.url}: {' | '.join(detail[:12])} ({where})") from exc


# --------------------------------------------------------------------------- login


def simple_auth_password(airflow_home: Path, username: str = "admin") -> str:
    """The password SimpleAuthManager generated for ``username`` under ``airflow_home``."""
    passwords = Path(airflow_home) / "simple_auth_manager_passwords.json.generated"
    return json.loads(passwords.read_text())[username]


def login(page: Any, base_url: str, username: str, password: str, *, artifacts: Path | None = None) -> None:
    """Sign in through SimpleAuthManager's login page; returns on the UI's home page."""
    from playwright.sync_api import expect

    base_url = base_url.rstrip("/")
    with ui_step(page, "login", artifacts):
        page.goto(f"{base_url}/auth/login?next=%2F")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        sign_in = page.get_by_role("button", name="Sign in")
        expect(sign_in).to_be_enabled()
        sign_in.click()
        try:
            page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)
        except Exception as exc:
            alert = page.get_by_role("alert")
            shown = " / ".join(t.strip() for t in alert.all_inner_texts() if t.strip()) if alert.count() else ""
            raise AssertionError(f"still on the login page after signing in as {username!r}: {shown}") from exc
        # The SPA is up once its navigation is rendered.
        expect(page.get_by_role("link", name="Dags").or_(page.get_by_role("button", name="Dags")).first).to_be_visible()


# --------------------------------------------------------------------------- trigger form


def _required_but_empty(dialog: Any) -> list[str]:
    names = dialog.locator('[name^="element_"][required]').evaluate_all(
        "els => els.filter(e => e.type !== 'checkbox' && !e.value).map(e => e.name)"
    )
    return [n.removeprefix("element_") for n in names]


def _set_field(page: Any, dialog: Any, name: str, value: ParamValue) -> None:
    from playwright.sync_api import expect

    field = dialog.locator(f'[name="element_{name}"]')
    if field.count() == 0:
        present = dialog.locator('[name^="element_"]').evaluate_all("els => els.map(e => e.name)")
        raise AssertionError(
            f"the trigger form has no field for param {name!r}; fields: {[n.removeprefix('element_') for n in present]}"
        )
    field = field.first
    kind = field.evaluate("e => e.type === 'checkbox' ? 'switch' : (e.type === 'hidden' ? 'select' : 'input')")
    if kind == "switch":
        if not isinstance(value, bool):
            raise AssertionError(f"param {name!r} is a switch: give a bool, not {value!r}")
        if field.is_checked() != value:
            switch = dialog.locator(f'label:has(> input[name="element_{name}"])')
            if switch.count():
                switch.first.click()
            else:
                field.set_checked(value, force=True)
        expect(field).to_be_checked(checked=value)
    elif kind == "select":
        text = json.dumps(value) if isinstance(value, bool) else str(value)
        combobox = field.locator("xpath=ancestor::*[.//*[@role='combobox']][1]").get_by_role("combobox")
        combobox.click()
        page.get_by_role("option", name=text, exact=True).click()
        expect(field).to_have_value(text)
    else:
        text = json.dumps(value) if isinstance(value, bool) else str(value)
        field.fill(text)
        field.blur()  # number inputs commit (and clamp) on blur
        expect(field).to_have_value(text)


def open_trigger_form(page: Any, base_url: str, dag_id: str, *, artifacts: Path | None = None) -> Any:
    """Open the DAG's page, click Trigger, and return the dialog with Run Parameters shown."""
    from playwright.sync_api import expect

    with ui_step(page, "open trigger form", artifacts):
        page.goto(f"{base_url.rstrip('/')}/dags/{dag_id}")
        if "/auth/login" in page.url:
            raise AssertionError("not signed in (redirected to the login page): call login() first")
        trigger = page.get_by_test_id("trigger-dag-button").or_(page.get_by_role("button", name="Trigger", exact=True))
        trigger.first.click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_text(dag_id).first).to_be_visible()
        single = dialog.get_by_role("radio", name=re.compile("Single Run"))
        if single.count() and not single.first.is_checked():
            dialog.get_by_text("Single Run", exact=True).click()
        section = dialog.get_by_role("button", name="Run Parameters")
        expect(section).to_be_visible()
        if section.get_attribute("aria-expanded") == "false":
            section.click()
        expect(dialog.locator('[name^="element_"]').first).to_be_visible()
    return dialog


def trigger_from_form(
    page: Any,
    base_url: str,
    dag_id: str,
    params: Mapping[str, ParamValue],
    *,
    artifacts: Path | None = None,
    timeout_ms: float = 30_000,
) -> str:
    """Trigger ``dag_id`` from its trigger form with ``params`` set in the Run Parameters fields.

    Returns the new run's id, read from the UI's own ``POST .../dagRuns`` response.
    """
    from playwright.sync_api import expect

    dialog = open_trigger_form(page, base_url, dag_id, artifacts=artifacts)
    for name, value in params.items():
        with ui_step(page, f"set param {name}", artifacts):
            _set_field(page, dialog, name, value)
    with ui_step(page, "submit trigger form", artifacts):
        submit = dialog.get_by_test_id("trigger-dag-submit")
        submit = submit.or_(dialog.get_by_role("button", name="Trigger", exact=True)).first
        try:
            expect(submit).to_be_enabled(timeout=5_000)
        except AssertionError as exc:
            empty = _required_but_empty(dialog)
            raise AssertionError(
                "the Trigger button stays disabled"
                + (
                    f": the form marks these params required but they are empty: {empty}. Airflow 3's form "
                    "requires every Param whose type does not include 'null', and an empty string counts as "
                    "missing; give such Params type=['null', 'string'] (default None) if they may be empty"
                    if empty
                    else ""
                )
            ) from exc
        path = f"/api/v2/dags/{dag_id}/dagRuns"
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.split("?")[0].endswith(path), timeout=timeout_ms
        ) as response_info:
            submit.click()
        response = response_info.value
        if not response.ok:
            raise AssertionError(f"POST {path} from the form -> {response.status}: {response.text()[:2000]}")
        run_id = response.json()["dag_run_id"]
        expect(dialog).to_be_hidden(timeout=timeout_ms)
    return run_id


# --------------------------------------------------------------------------- REST side


def runs_newest_first(client: Any, dag_id: str) -> list[dict]:
    """The DAG's runs (``AirflowClient.runs``) ordered by ``run_after``, newest first."""
    return sorted(client.runs(dag_id), key=lambda r: r.get("run_after") or "", reverse=True)


def new_run_id(
    client: Any, dag_id: str, before: set[str], *, run_type: str | None = "manual", timeout: float = 60
) -> str:
    """The id of the newest run of ``dag_id`` not in ``before`` (of ``run_type``, if given)."""
    deadline = time.monotonic() + timeout
    while True:
        fresh = [
            r
            for r in runs_newest_first(client, dag_id)
            if r["dag_run_id"] not in before and (run_type is None or r.get("run_type") == run_type)
        ]
        if fresh:
            return fresh[0]["dag_run_id"]
        if time.monotonic() > deadline:
            raise AssertionError(f"no new {run_type or ''} run of {dag_id} appeared within {timeout:.0f} s")
        time.sleep(1)


def wait_for_run(client: Any, dag_id: str, run_id: str, *, timeout: float = 600, poll: float = 3) -> dict:
    """Poll the REST API until the run reaches success or failed; return the run."""
    deadline = time.monotonic() + timeout
    run: dict | None = None
    while time.monotonic() < deadline:
        run = next((r for r in client.runs(dag_id) if r["dag_run_id"] == run_id), None)
        if run is not None and run["state"] in TERMINAL_RUN_STATES:
            return run
        time.sleep(poll)
    states = {ti["task_id"]: ti["state"] for ti in client.task_instances(dag_id, run_id)} if run else {}
    raise AssertionError(
        f"run {run_id} of {dag_id} not finished after {timeout:.0f} s: "
        f"{run['state'] if run else 'not found'}; tasks: {states}"
    )
