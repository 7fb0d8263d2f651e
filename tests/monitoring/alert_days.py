"""Days of drift signals and decisions for the alert tests, and their mail settings."""

from __future__ import annotations

import datetime as dt
import json
import re

from graphrec.settings import Settings
from monitoring.policy import decide
from monitoring.policy_state import MonitorState
from monitoring.signal_table import SPECS
from monitoring.signal_values import Signal

DAY0 = dt.date(2025, 1, 20)


REPORT = "/lake/reports/monitoring/ds=2025-01-21/report.html"


def signal(name: str, value: float | None, before=0.1, after=0.4, detail: str = "") -> Signal:
    return Signal(
        name=name,
        group=SPECS[name].group,
        metric={"event_type_missing": "share difference", "quality_proxy": "proxy/offline ratio"}.get(
            name, "normed Wasserstein"
        ),
        value=value,
        before=before,
        after=after,
        n_current=4012,
        n_reference=27950,
        detail=detail,
    )


def day(item_popularity=0.02, event_type_missing=0.0, category_mix=0.01) -> list[Signal]:
    return [
        signal("item_popularity", item_popularity, before=0.82, after=1.37, detail="popularity of {{ ds }} {# odd #}"),
        signal("event_type_missing", event_type_missing, before=0.0, after=event_type_missing),
        signal("category_mix", category_mix, before={"books": 0.5, "toys": 0.5}, after={"books": 0.2, "toys": 0.8}),
    ]


def run(policy, days, start=DAY0):
    state, decisions = MonitorState(), []
    for offset, signals in enumerate(days):
        decision, state = decide(policy, start + dt.timedelta(days=offset), signals, state)
        decisions.append(decision)
    return decisions


def settings_for(tmp_path, **overrides) -> Settings:
    """Settings with two recipients and a sender, in ``tmp_path`` (``overrides``: more alert settings)."""
    alerts = {"recipients": ["mlops@example.org", "oncall@example.org"], "sender": "graphrec@example.org"}
    return Settings(home=tmp_path, alerts=alerts | overrides)


def smtp_connection(port: int) -> str:
    return json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {"disable_tls": True, "disable_ssl": True}}
    )


AIRFLOW_URL = "https://airflow.example.com/ui"
REPORTS_URL = "https://ops.example.com/graphrec/reports"


def linked_settings(tmp_path, **overrides) -> Settings:
    """:func:`settings_for` with public base URLs for the Airflow UI and the reports."""
    return settings_for(tmp_path, airflow_url=AIRFLOW_URL + "/", reports_url=REPORTS_URL, **overrides)


def hrefs(page: str) -> list[str]:
    """The ``href`` targets of an HTML part."""
    return re.findall(r"href=['\"]([^'\"]+)['\"]", page)


def parts(message) -> tuple[str, str]:
    """``(plain text, HTML)`` of a ``multipart/alternative`` message (both must exist)."""
    assert message.get_content_type() == "multipart/alternative"
    plain, page = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and page is not None
    return plain.get_content(), page.get_content()
