"""A publisher SIGKILLed at random moments never leaves serving without a complete version.

A subprocess publishes small versions in a loop; the test kills it at seeded random
moments (anywhere inside a publication: writing files, verifying, renaming, switching
the pointer, pruning) and then checks that ``CURRENT`` names a version whose checksums
all match and that recommenders -- one that kept running across the kills and a fresh
one -- serve it.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from graphrec.settings import Settings
from serving import layout
from serving.publish import publish_embeddings
from serving.recommender import Recommender
from serving.versions import current_version, verify_version

REPO = Path(__file__).resolve().parents[2]
KILLS = 5
SEED = 20250104

PUBLISHER = textwrap.dedent(
    """
    import sys

    import numpy as np
    import pandas as pd

    from graphrec.settings import Settings
    from serving.publish import publish_embeddings
    from training.embeddings import ModelEmbeddings

    settings = Settings(home=sys.argv[1], index={"keep_versions": 2})
    rng = np.random.default_rng(int(sys.argv[2]))
    users, items = np.arange(60, dtype=np.int64), np.arange(1000, 1050, dtype=np.int64)
    seen = pd.DataFrame({"user_id": rng.integers(0, 60, 300), "item_id": rng.integers(1000, 1050, 300)})
    n = 0
    while True:
        n += 1
        emb = ModelEmbeddings(
            users, items, rng.normal(size=(60, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32),
            {"model_version": n},
        )
        out = publish_embeddings(settings, emb, ds="2025-01-04", seen=seen, popularity=items[::-1])
        print(out.index_version, flush=True)
    """
)


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    """The publisher's first output line (its first publication), or fail after ``timeout``."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        proc.kill()
        pytest.fail(f"the publisher printed nothing in {timeout} s: {proc.stderr.read()}")


def test_killing_a_publisher_at_random_moments_leaves_a_complete_version_serving(tmp_path):
    home = tmp_path / "home"
    settings = Settings(home=home, index={"keep_versions": 2})
    script = tmp_path / "publisher.py"
    script.write_text(PUBLISHER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    rng = random.Random(SEED)
    survivor: Recommender | None = None
    seen_versions = set()
    for kill in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(home), str(SEED + kill)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        try:
            assert _first_line(proc, timeout=120).startswith("v")
            time.sleep(rng.uniform(0.0, 0.4))  # somewhere in a later publication
            assert proc.poll() is None, proc.stderr.read()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL

        version = current_version(settings)
        assert version is not None
        assert verify_version(home / "indexes" / version), layout.checksum_problems(home / "indexes" / version)
        for path in layout.version_dirs(settings.indexes_dir):  # every visible version is whole
            assert verify_version(path), (path.name, layout.checksum_problems(path))
        fresh = Recommender(settings).recommend(0, 5)
        assert fresh.index_version == version and len(fresh.items) == 5
        if survivor is None:
            survivor = Recommender(settings)
        kept = survivor.recommend(0, 5)
        assert kept.index_version == version and kept.items == fresh.items
        seen_versions.add(version)

    assert len(seen_versions) > 1  # the kills landed in different publications
    # whatever the kills left behind, the next publication gets the next free number
    numbers = [layout.version_number(p.name) for p in layout.version_dirs(settings.indexes_dir)]
    import numpy as np
    import pandas as pd

    from training.embeddings import ModelEmbeddings

    emb = ModelEmbeddings(
        np.arange(60, dtype=np.int64),
        np.arange(1000, 1050, dtype=np.int64),
        np.ones((60, 8), np.float32),
        np.eye(50, 8, dtype=np.float32),
        {"model_version": 0},
    )
    seen = pd.DataFrame({"user_id": [0], "item_id": [1000]})
    out = publish_embeddings(settings, emb, ds="2025-01-04", seen=seen, popularity=np.arange(1000, 1050))
    assert out.index_version == layout.version_name(max(numbers) + 1)
    assert survivor.recommend(0, 5).index_version == out.index_version
