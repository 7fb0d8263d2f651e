"""Measured signals (monitoring.signal_values): JSON round trip, finite numbers only."""

from __future__ import annotations

import json
import math

from monitoring.signal_table import SPECS
from monitoring.signal_values import Signal, measured


def test_signals_round_trip_through_dicts_and_json(ordinary):
    for signal in ordinary.signals.values():
        assert Signal.from_dict(signal.to_dict()) == signal
        assert Signal.from_dict(json.loads(json.dumps(signal.to_dict(), allow_nan=False))) == signal


def test_measured_stamps_the_table_and_drops_non_finite_numbers():
    signal = measured("category_mix", math.nan, {"books": 0.5, "toys": math.inf}, 0.25, 10.0, 20, "detail")
    assert (signal.group, signal.metric) == (SPECS["category_mix"].group, SPECS["category_mix"].metric)
    assert signal.value is None and signal.before == {"books": 0.5, "toys": None} and signal.after == 0.25
    assert (signal.n_current, signal.n_reference) == (10, 20) and isinstance(signal.n_current, int)
    assert Signal.from_dict(json.loads(json.dumps(signal.to_dict(), allow_nan=False))) == signal
