"""TEMPORARY during the settings regrouping: flat attribute/kwarg access, traced to a file."""

from __future__ import annotations

import os
import sys
from typing import Any

from graphrec.settings.legacy import RENAMED

TRACE = os.environ.get("GRAPHREC_TRACE_LEGACY")


def record(kind: str, name: str, depth: int = 2) -> None:
    if not TRACE:
        return
    frame = sys._getframe(1)
    while frame is not None and any(
        part in frame.f_code.co_filename for part in ("/pydantic", "graphrec/settings/", "/functools")
    ):
        frame = frame.f_back
    if frame is None:
        return
    with open(TRACE, "a") as f:
        f.write(f"{kind}\t{name}\t{frame.f_code.co_filename}\t{frame.f_lineno}\n")


def nest(data: Any, depth: int = 3) -> Any:
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key in list(out):
        if key in RENAMED:
            record("kwarg", key, depth)
            group, field = RENAMED[key]
            value = out.pop(key)
            grp = out.get(group)
            if grp is None:
                grp = {}
            elif hasattr(grp, "model_dump"):
                grp = grp.model_dump()
            else:
                grp = dict(grp)
            grp[field] = value
            out[group] = grp
    return out
