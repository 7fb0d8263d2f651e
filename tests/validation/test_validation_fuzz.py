"""Property-based fuzzing of the data contract (Hypothesis).

The property: whatever lands, ``validate_partition`` returns an outcome and never raises;
the partition ends up either in ``curated/`` (accepted, possibly with warnings) or in
``quarantine/`` with named reasons, byte-identical either way; ``curated/`` changes only
on acceptance; and no example needs the ``check_error`` safety net (that would be a crash
the contract does not name yet).

Three generators:

* Arrow tables built column by column: each contract column in its own type or another
  (int32, uint64, float, text, binary, bool, timestamps of other units, dates, lists,
  structs, nulls, dictionaries), with nulls, extreme values (int64 limits, 2**53, NaN,
  infinities), text in any script, missing, extra and duplicated columns, 0-30 rows;
  the users and items files likewise kept, dropped or replaced.
* Byte-level corruptions of a real partition's files: truncation, flipped bytes,
  overwritten or inserted runs, garbage before or after, empty files.
* Valid-typed frames whose values are drawn near the limits (to exercise the row and
  batch rules rather than the type checks).

Each Great Expectations run takes ~0.7 s, so ``make test`` tries
:data:`EXAMPLES` examples per generator (fixed seed: the same examples every run). A soak
run draws fresh random examples: ``make fuzz`` (``GRAPHREC_FUZZ_EXAMPLES=300``).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from graphrec import contract
from graphrec.lake import partition_name, sha256_file
from graphrec.settings import Settings, ValidationSettings
from ingest.simulator import SimulationConfig, simulate
from validation.partition import validate_partition

EXAMPLES = int(os.environ.get("GRAPHREC_FUZZ_EXAMPLES", "8"))
SOAK = "GRAPHREC_FUZZ_EXAMPLES" in os.environ

CFG = SimulationConfig(n_users=40, n_items=30, days=5, events_per_day=40, drift_day=None)
DAY = CFG.day(5)
START = dt.datetime.combine(DAY, dt.time(), tzinfo=dt.UTC)
NOW = START + dt.timedelta(days=3)
DAY_US = 86_400_000_000
START_US = int(START.timestamp()) * 1_000_000
INT64 = (-(2**63), 2**63 - 1)

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not SOAK,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def _config() -> ValidationSettings:
    # Dominance rules from 10 rows, so that small examples reach every batch rule.
    return ValidationSettings(data_docs=False, dominance_min_rows=10)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A home with days 1-4 curated and day 5 landed as simulated (valid)."""
    home = tmp_path_factory.mktemp("fuzz-template") / "home"
    s = Settings(home=home, validation=ValidationSettings(data_docs=False))
    simulate(CFG, s.landing_dir)
    for i in range(1, 5):
        assert validate_partition(s, CFG.day(i), now=NOW).status == "curated"
    return home


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _fresh(template: Path, workdir: Path) -> Settings:
    home = workdir / uuid.uuid4().hex[:12] / "home"
    shutil.copytree(template, home)
    return Settings(home=home, validation=_config())


def _tree(directory: Path) -> dict[str, str]:
    if not directory.exists():
        return {}
    return {p.relative_to(directory).as_posix(): sha256_file(p) for p in sorted(directory.rglob("*")) if p.is_file()}


def check_property(s: Settings) -> None:
    """Validate day 5 and check the contract's promise about where its bytes went."""
    landed = s.landing_dir / partition_name(DAY)
    raw = _tree(landed)
    curated_before = _tree(s.curated_dir)

    outcome = validate_partition(s, DAY, now=NOW)  # must not raise

    assert outcome.status in ("curated", "quarantined")
    assert "check_error" not in {f["check"] for f in outcome.failed}, outcome.message()
    assert not landed.exists()
    assert all(f["check"] and f["severity"] in ("blocking", "warning") for f in outcome.failed + outcome.warnings)
    if outcome.status == "curated":
        after = _tree(s.curated_dir)
        mine = {k.split("/", 1)[1]: v for k, v in after.items() if k.startswith(partition_name(DAY) + "/")}
        assert mine == raw
        assert {k: v for k, v in after.items() if not k.startswith(partition_name(DAY) + "/")} == curated_before
    else:
        assert outcome.failed
        assert _tree(s.curated_dir) == curated_before
        kept = {k: v for k, v in _tree(outcome.path).items() if k != "_reason.json"}
        assert kept == raw and (outcome.path / "_reason.json").is_file()


# Arrow columns -------------------------------------------------------------------------
TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=8)
IDS = st.one_of(
    st.integers(0, 45),  # mostly known users and items
    st.sampled_from([0, 2**31 - 1, 2**53 - 1, 2**53, 2**53 + 1, INT64[1], -1, INT64[0]]),
    st.integers(*INT64),
)
TS = st.one_of(
    st.integers(START_US, START_US + DAY_US - 1), st.integers(-(2**62), 2**62), st.sampled_from([START_US - 1])
)
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1.0, 3.5, 5.0]))
EVENT_TYPES = st.one_of(st.sampled_from(list(contract.EVENT_TYPES)), TEXT)


def _values(kind: str, n: int, default: st.SearchStrategy) -> st.SearchStrategy:
    """``n`` values for a column of Arrow type ``kind`` (``"own"``: the contract's type)."""
    scalar = {
        "own": default,
        "int32": st.integers(-(2**31), 2**31 - 1),
        "uint64": st.integers(0, 2**64 - 1),
        "float64": FLOATS,
        "string": TEXT,
        "binary": st.binary(max_size=8),
        "bool": st.booleans(),
        "timestamp_ns": st.integers(-(2**62), 2**62),
        "timestamp_s_naive": st.integers(-(2**40), 2**40),
        "date32": st.integers(-(2**20), 2**20),
        "list": st.lists(st.integers(*INT64), max_size=3),
        "struct": st.fixed_dictionaries({"a": st.integers(-5, 5)}),
        "null": st.none(),
        "dictionary": TEXT,
    }[kind]
    return st.lists(st.one_of(st.none(), scalar) if kind != "null" else scalar, min_size=n, max_size=n)


ARROW = {
    "int32": pa.int32(),
    "uint64": pa.uint64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "binary": pa.binary(),
    "bool": pa.bool_(),
    "timestamp_ns": pa.timestamp("ns", tz="UTC"),
    "timestamp_s_naive": pa.timestamp("s"),
    "date32": pa.date32(),
    "list": pa.list_(pa.int64()),
    "struct": pa.struct([("a", pa.int64())]),
    "null": pa.null(),
}
KINDS = ["own"] * 8 + sorted(ARROW) + ["dictionary"]


def _array(kind: str, values: list, own: pa.DataType) -> pa.Array:
    if kind == "dictionary":
        return pa.array(values, pa.string()).dictionary_encode()
    return pa.array(values, own if kind == "own" else ARROW[kind])


@st.composite
def tables(draw, fields: list[tuple[str, pa.DataType, st.SearchStrategy]], max_rows: int = 30) -> pa.Table:
    """A table over ``fields`` (name, contract type, value strategy), each column possibly
    of another type, dropped or repeated, plus possibly an extra column."""
    n = draw(st.integers(0, max_rows))
    names, arrays = [], []
    for name, own, default in fields:
        if draw(st.integers(0, 19)) == 0:
            continue  # missing column
        kind = draw(st.sampled_from(KINDS))
        array = _array(kind, draw(_values(kind, n, default)), own)
        for _ in range(2 if draw(st.integers(0, 24)) == 0 else 1):  # sometimes a duplicate
            names.append(name)
            arrays.append(array)
    if draw(st.integers(0, 9)) == 0:
        kind = draw(st.sampled_from(KINDS[8:]))
        names.append(draw(st.sampled_from(["session_id", "extra", contract.USER_ID.upper()])))
        arrays.append(_array(kind, draw(_values(kind, n, TEXT)), pa.string()))
    if not arrays:
        return pa.table({})
    return pa.Table.from_arrays(arrays, names=names)


INTERACTION_FIELDS = [
    (contract.USER_ID, pa.int64(), IDS),
    (contract.ITEM_ID, pa.int64(), IDS),
    (contract.EVENT_TS, pa.timestamp("us", tz="UTC"), TS),
    (contract.EVENT_TYPE, pa.string(), EVENT_TYPES),
    (contract.RATING, pa.float64(), FLOATS),
]
ITEM_FIELDS = [
    (contract.ITEM_ID, pa.int64(), IDS),
    (contract.CATEGORY, pa.string(), st.one_of(st.sampled_from(["books", "music"]), TEXT)),
    (contract.FIRST_SEEN_TS, pa.timestamp("us", tz="UTC"), TS),
]
USER_FIELDS = [(contract.USER_ID, pa.int64(), IDS)]

CATALOG = st.sampled_from(["keep", "keep", "drop", "replace"])


@FUZZ
@given(
    interactions=tables(INTERACTION_FIELDS),
    items=st.tuples(CATALOG, tables(ITEM_FIELDS, max_rows=8)),
    users=st.tuples(CATALOG, tables(USER_FIELDS, max_rows=8)),
)
def test_any_arrow_table_gets_an_outcome_never_an_exception(template, workdir, interactions, items, users):
    s = _fresh(template, workdir)
    part = s.landing_dir / partition_name(DAY)
    pq.write_table(interactions, part / contract.INTERACTIONS_FILE)
    for (action, table), file in ((items, contract.ITEMS_FILE), (users, contract.USERS_FILE)):
        if action == "drop":
            (part / file).unlink()
        elif action == "replace":
            pq.write_table(table, part / file)
    check_property(s)


# Bytes ---------------------------------------------------------------------------------
@st.composite
def corruptions(draw) -> tuple[str, str, int, bytes]:
    file = draw(st.sampled_from([contract.INTERACTIONS_FILE] * 3 + [contract.ITEMS_FILE, contract.USERS_FILE]))
    op = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "prepend", "append", "empty", "random"]))
    return file, op, draw(st.integers(0, 2**31)), draw(st.binary(min_size=1, max_size=64))


def corrupt(data: bytes, op: str, where: int, junk: bytes) -> bytes:
    pos = where % max(len(data), 1)
    if op == "truncate":
        return data[:pos]
    if op == "flip":
        if not data:
            return junk
        out = bytearray(data)
        for i, b in enumerate(junk[:8]):
            out[(pos + i * 997) % len(out)] ^= b or 0xFF
        return bytes(out)
    if op == "overwrite":
        return data[:pos] + junk + data[pos + len(junk) :]
    if op == "insert":
        return data[:pos] + junk + data[pos:]
    if op == "prepend":
        return junk + data
    if op == "append":
        return data + junk
    if op == "empty":
        return b""
    return junk * (1 + where % 50)


@FUZZ
@given(changes=st.lists(corruptions(), min_size=1, max_size=3))
# Found by the soak: one byte in the items file's schema made a column name invalid UTF-8.
@example(changes=[(contract.ITEMS_FILE, "overwrite", 86, b"\x80")])
def test_corrupted_bytes_of_a_real_partition_are_quarantined_intact_or_accepted(template, workdir, changes):
    s = _fresh(template, workdir)
    part = s.landing_dir / partition_name(DAY)
    for file, op, where, junk in changes:
        path = part / file
        path.write_bytes(corrupt(path.read_bytes(), op, where, junk))
    check_property(s)


# Valid types, values at the limits ------------------------------------------------------
@FUZZ
@given(
    rows=st.lists(
        st.tuples(IDS, IDS, TS, EVENT_TYPES, st.one_of(st.none(), FLOATS)),
        min_size=1,
        max_size=40,
    )
)
def test_contract_typed_frames_with_extreme_values_get_an_outcome(template, workdir, rows):
    s = _fresh(template, workdir)
    columns = list(zip(*rows))
    table = pa.Table.from_arrays(
        [pa.array(list(values), field.type) for values, field in zip(columns, contract.INTERACTIONS_SCHEMA)],
        schema=contract.INTERACTIONS_SCHEMA,
    )
    pq.write_table(table, s.landing_dir / partition_name(DAY) / contract.INTERACTIONS_FILE)
    check_property(s)
