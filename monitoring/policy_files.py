"""The drift policy's files: the YAML policy and the monitor's state, read and written.

The file edges of the pure decision (:mod:`monitoring.policy`):

* :func:`load_policy` reads the packaged ``monitoring/drift_policy.yaml``, then the
  overrides of a user's file (``GRAPHREC_DRIFT__POLICY``), which only needs the keys it
  changes, and validates the result (:mod:`monitoring.policy_rules`);
* :func:`load_state` / :func:`save_state` read and atomically write the
  :class:`~monitoring.policy_state.MonitorState` carried from day to day
  (``reports/drift/state.json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from graphrec.lake import atomic_write_json
from monitoring.policy_rules import DriftPolicy, PolicyError, merge_overrides
from monitoring.policy_state import MonitorState

DEFAULT_POLICY_PATH = Path(__file__).with_name("drift_policy.yaml")


def load_policy(path: str | Path | None = None) -> DriftPolicy:
    """Read the packaged default policy, then the overrides of ``path`` if given.

    A policy file needs only the keys it changes: ``signals: {head_share: {threshold:
    0.08}}`` keeps every other setting of ``drift_policy.yaml``. A rule that switches
    between ``threshold`` and ``below`` drops the other one.

    Args:
        path (str | Path | None): a policy file of overrides; ``None`` for the default.

    Raises:
        PolicyError: the file is not a mapping, names an unknown signal or key, or has
            a bad kind, a negative threshold or window, etc. (every problem listed).
        FileNotFoundError: ``path`` does not exist.
    """
    data = _read_yaml(DEFAULT_POLICY_PATH)
    source = str(DEFAULT_POLICY_PATH)
    if path is not None:
        overrides = _read_yaml(Path(path))
        if not isinstance(overrides, Mapping):
            raise PolicyError(f"{path}: expected a mapping at the top level, got {type(overrides).__name__}")
        data, source = merge_overrides(data, overrides), str(path)
    return DriftPolicy.from_mapping(data, source=source)


def _read_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        try:
            return yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{path}: not valid YAML: {exc}") from None


def load_state(path: str | Path) -> MonitorState:
    """Read the state file; a missing file is a fresh state."""
    path = Path(path)
    if not path.exists():
        return MonitorState()
    return MonitorState.from_dict(json.loads(path.read_text(encoding="utf-8")))


def save_state(path: str | Path, state: MonitorState) -> None:
    """Write the state file atomically (a reader never sees half of it)."""
    atomic_write_json(Path(path), state.to_dict())
