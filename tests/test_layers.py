"""The import-linter layers contract (``[tool.importlinter]`` in ``pyproject.toml``) holds,
and it is a real check: it rejects a lower layer importing a higher one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("graphrec", "ingest", "validation", "features", "training", "serving", "monitoring", "app")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_tree(target: Path) -> None:
    shutil.copy2(ROOT / "pyproject.toml", target / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy, ahead of the editable install
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    _copy_tree(tmp_path)
    return tmp_path


def test_the_layers_contract_is_kept(tree):
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "imported"),
    [
        ("graphrec/contract.py", "from app import cli", "app.cli"),  # core -> application
        ("training/data.py", "import serving.canary", "serving.canary"),  # training -> serving
        ("ingest/landing.py", "from validation import partition", "validation.partition"),  # ingest -> validation
        ("features/store.py", "from training import bst", "training.bst"),  # features -> training
    ],
)
def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tree, module, statement, imported):
    path = tree / module
    path.write_text(path.read_text() + f"\n{statement}  # deliberate violation\n")
    result = _lint(tree)
    assert result.returncode == 1, result.stdout
    assert "1 broken" in result.stdout
    importer = module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {imported}" in result.stdout


def test_an_import_inside_a_function_counts_too(tree):
    path = tree / "validation" / "checks.py"
    path.write_text(path.read_text() + "\n\ndef _late():\n    from monitoring import policy\n\n    return policy\n")
    result = _lint(tree)
    assert result.returncode == 1
    assert "validation.checks -> monitoring.policy" in result.stdout
