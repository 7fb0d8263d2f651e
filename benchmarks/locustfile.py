"""Locust load of the recommendation service, driven by ``benchmarks/bench_load.py``.

Every simulated client waits a random 0-2 s (uniform, ``between(0, 2)``) after each
answer, so ``-u N`` clients offer about ``N`` requests/s in a random stream (slightly
fewer as answers slow down; the benchmark reports the throughput it got). A fixed 1 s
period (``constant_throughput(1)``) kept the clients in lockstep: one burst of ``N``
requests per second, which measures the burst, not the rate; and each client first waits
a random 0-2 s too, so the phase does not open with a burst of every client at once. User ids are drawn (seeded per client) from the file
named by ``BENCH_USERS`` (one id per line); ``BENCH_K`` sets ``k``. A response counts as
a failure when its status is not 200 (Locust's default for non-2xx) or when it carries
fewer items than asked.
"""

from __future__ import annotations

import itertools
import os
import random

import gevent
from locust import FastHttpUser, between, task

USERS = [int(line) for line in open(os.environ["BENCH_USERS"]) if line.strip()]
K = int(os.environ.get("BENCH_K", "20"))
_seeds = itertools.count(int(os.environ.get("BENCH_SEED", "42")))


class Recommend(FastHttpUser):
    wait_time = between(0.0, 2.0)

    def on_start(self) -> None:
        self.rng = random.Random(next(_seeds))
        # Arrive mid-think: without this, every client Locust spawns in the first second
        # sends its first request at once, and the phase measures that burst queueing
        # (p99 = max, 0.5-1 s) instead of the steady random stream.
        gevent.sleep(self.rng.uniform(0.0, 2.0))

    @task
    def recommend(self) -> None:
        user = self.rng.choice(USERS)
        with self.client.get(f"/recommend/{user}?k={K}", name="/recommend/{user_id}", catch_response=True) as resp:
            if resp.status_code == 200 and resp.text.count('"item_id"') < K:
                resp.failure(f"fewer than {K} items")
