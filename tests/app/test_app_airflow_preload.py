"""Which Airflow component starts through app.airflow_preload, and what it preloads."""

from __future__ import annotations

import sys

from app import airflow_preload
from app.airflow_local import airflow_command
from app.services import component_command
from graphrec.settings import Settings


def test_only_the_component_that_forks_the_tasks_preloads(tmp_path):
    embedded = Settings(home=tmp_path)
    assert airflow_command(embedded, "scheduler") == [sys.executable, "-m", "app.airflow_preload", "scheduler"]
    for args in (("api-server",), ("dag-processor",), ("db", "migrate")):
        assert airflow_command(embedded, *args) == [sys.executable, "-m", "airflow", *args]
    services = Settings(home=tmp_path, profile="services")
    # Under Celery the scheduler forks nothing; each worker does.
    assert component_command(services, "scheduler")[1:] == ["-m", "airflow", "scheduler"]
    assert component_command(services, "celery-worker", index=2)[1:4] == ["-m", "app.airflow_preload", "celery"]
    plain = Settings(home=tmp_path, airflow={"preload": False})
    assert airflow_command(plain, "scheduler")[1:] == ["-m", "airflow", "scheduler"]


def test_preload_imports_what_is_installed_and_skips_the_rest():
    took = airflow_preload.preload(("json", "graphrec_no_such_module"))
    assert list(took) == ["json"] and "json" in sys.modules


def test_every_component_runs_a_module_that_python_can_run(tmp_path):
    import importlib.util

    from app.services import COMPONENTS

    services = Settings(home=tmp_path, profile="services")
    for name in COMPONENTS:
        if name == "init":
            continue
        command = component_command(services, name, index=1)
        module = command[command.index("-m") + 1]
        spec = importlib.util.find_spec(module)
        assert spec is not None, (name, module)
        if spec.submodule_search_locations is not None:  # `python -m package` runs package.__main__
            assert importlib.util.find_spec(f"{module}.__main__") is not None, (name, module)
