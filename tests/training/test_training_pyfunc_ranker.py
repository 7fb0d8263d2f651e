"""The BST ranker's pyfunc model is pickled with its modules: it loads and predicts without graphrec."""

from __future__ import annotations

import subprocess
import sys

import cloudpickle
import numpy as np
from bst_rows import VOCAB, frame, row

from training import pyfunc_ranker
from training.bst import build_bst
from training.bst_encoding import encode
from training.bst_fit import predict
from training.bst_io import save_ranker

#: Run in a fresh interpreter where every graphrec package fails to import.
LOAD_WITHOUT_GRAPHREC = """
import pickle, sys
import numpy as np, pandas as pd
PACKAGES = {"graphrec", "ingest", "validation", "features", "training", "serving", "monitoring", "app"}
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in PACKAGES:
            raise ImportError(name)
sys.meta_path.insert(0, Blocked())
model = pickle.loads(open(sys.argv[1], "rb").read())
context = type("Context", (), {"artifacts": {"ranker": sys.argv[2]}})()
model.load_context(context)
np.save(sys.argv[4], model.predict(context, pd.read_pickle(sys.argv[3])))
"""


def test_the_pickled_model_loads_and_predicts_without_graphrec(tmp_path):
    model = build_bst(VOCAB, seed=1, seq_len=5, dim=16).eval()
    save_ranker(model, VOCAB, tmp_path / "ranker", extra={"seq_len": 5})
    rows = frame(row(100, [101, 102]), row(120, None), row(999, [150]))
    rows.to_pickle(tmp_path / "rows.pkl")
    modules = (*pyfunc_ranker.BY_VALUE, pyfunc_ranker)
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        (tmp_path / "model.pkl").write_bytes(cloudpickle.dumps(pyfunc_ranker.BSTRanker()))
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)
    args = [tmp_path / "model.pkl", tmp_path / "ranker", tmp_path / "rows.pkl", tmp_path / "out.npy"]
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_GRAPHREC, *map(str, args)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), predict(model, encode(rows, VOCAB, 5)))
