"""Typed hand-offs between stages: what a stage returns and how it crosses an XCom.

A stage entry point (``train_retriever``, ``run_canary``, ``publish_model``, ``monitor_day``,
``materialize``...) returns a frozen dataclass that derives from :class:`Handoff`. Code
reads its fields, so a renamed field fails where it is read, in a test. Only the DAG turns
it into a plain dict for XCom (:meth:`Handoff.to_xcom`) and back
(:meth:`Handoff.from_xcom`): XCom carries references and scalars, never frames or arrays.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from pathlib import Path
from typing import Any, Self

from graphrec.lake import jsonable


def _restore(kind: Any, value: Any) -> Any:
    """``value`` (as :meth:`Handoff.to_xcom` wrote it) back into the field's type ``kind``."""
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        return _restore(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(kind) and isinstance(kind, type) and isinstance(value, dict):
        return kind.from_xcom(value) if issubclass(kind, Handoff) else kind(**value)
    if kind is Path:
        return Path(value)
    if kind is dt.date:
        return dt.date.fromisoformat(value)
    if origin in (list, tuple) and typing.get_args(kind):
        item = typing.get_args(kind)[0]
        items = [_restore(item, v) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict and len(typing.get_args(kind)) == 2:
        item = typing.get_args(kind)[1]
        return {k: _restore(item, v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class Handoff:
    """Base of the stage results: a frozen dataclass with an XCom form."""

    def to_xcom(self) -> dict[str, Any]:
        """The result as JSON-safe plain data (paths and dates as strings), for XCom."""
        return {f.name: jsonable(_plain(getattr(self, f.name))) for f in dataclasses.fields(self)}

    @classmethod
    def from_xcom(cls, data: dict[str, Any]) -> Self:
        """The result back from :meth:`to_xcom`'s form; unknown keys are an error."""
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        return cls(**{k: _restore(hints[k], v) for k, v in data.items()})


def _plain(value: Any) -> Any:
    if isinstance(value, Handoff):
        return value.to_xcom()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
