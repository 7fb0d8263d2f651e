"""Stage results cross XCom as plain JSON and come back as the same typed value."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from graphrec.handoff import Handoff


@dataclasses.dataclass(frozen=True)
class Inner(Handoff):
    version: int
    path: Path


@dataclasses.dataclass(frozen=True)
class Outer(Handoff):
    ds: dt.date
    model: str
    metrics: dict[str, float]
    inner: Inner | None = None
    paths: list[Path] = dataclasses.field(default_factory=list)
    note: str | None = None


def test_a_result_round_trips_through_json():
    value = Outer(
        ds=dt.date(2025, 1, 3),
        model="lightgcn",
        metrics={"recall_at_20": 0.25},
        inner=Inner(3, Path("/tmp/x/v0003")),
        paths=[Path("a"), Path("b")],
    )
    xcom = value.to_xcom()
    assert json.loads(json.dumps(xcom)) == xcom
    assert xcom["ds"] == "2025-01-03" and xcom["inner"] == {"version": 3, "path": "/tmp/x/v0003"}
    assert Outer.from_xcom(json.loads(json.dumps(xcom))) == value


def test_numpy_scalars_become_plain_numbers():
    xcom = Outer(ds=dt.date(2025, 1, 1), model="m", metrics={"a": np.float32(0.5)}).to_xcom()
    assert type(xcom["metrics"]["a"]) is float


def test_an_unknown_key_is_an_error():
    with pytest.raises(TypeError, match="no field"):
        Outer.from_xcom({"ds": "2025-01-01", "model": "m", "metrics": {}, "renamed": 1})
