"""FAQ matcher: load time, classification latency over the evaluation set, and the process's memory.

Loads the built-in matcher (jieba's dictionary included) in this process, classifies every message of
tests/faq/eval_set.tsv `--rounds` times, and prints one JSON line: load time, p50/p99/max latency in ms
(the first round separately: it fills the typo cache) and the CPU time of the same calls, one 10 KB text,
classifications/s, RSS (VmRSS now, VmHWM peak) before and after loading, and the load average (other
processes on the machine inflate wall-clock percentiles, not CPU time). Run it in a fresh process;
`--cold` first removes jieba's cached dictionary.

    python benchmarks/bench_faq.py [--rounds 20] [--cold]

Targets (issue #7): p99 < 5 ms, RSS < 150 MB for the whole process including jieba.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: peak only


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--cold", action="store_true", help="delete jieba's dictionary cache first")
    args = ap.parse_args()
    rss_before = _status_mb("VmRSS")
    from handlers.faq import FaqMatcher
    from handlers.faq.text import _cache_dir
    from tests.faq.conftest import eval_rows

    if args.cold:
        Path(_cache_dir(), "jieba.cache").unlink(missing_ok=True)
    started = time.perf_counter()
    matcher = FaqMatcher.default()
    matcher.classify("预热")  # jieba loads its dictionary on first use
    load_s = time.perf_counter() - started
    texts = [text for _, text in eval_rows()]
    rounds: list[list[float]] = []
    cpu: list[float] = []  # CPU time of the same calls: what is left when other processes compete for the cores
    for _ in range(args.rounds):
        times = []
        for text in texts:
            c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
            matcher.classify(text)
            times.append((time.perf_counter_ns() - t0) / 1e6)
            cpu.append((time.thread_time_ns() - c0) / 1e6)
        rounds.append(times)
    cpu.sort()
    huge = ("我的码用不了 " + "啊" * 5000 + " lorem ipsum" * 500)[:10_000]
    t0 = time.perf_counter_ns()
    matcher.classify(huge)
    huge_ms = (time.perf_counter_ns() - t0) / 1e6
    first = sorted(rounds[0])
    warm = sorted(t for r in rounds[1:] or rounds for t in r)
    figures = {
        "messages": len(texts), "rounds": args.rounds, "load_s": round(load_s, 3),
        "first_round_p50_ms": round(statistics.median(first), 3),
        "first_round_p99_ms": round(_percentile(first, .99), 3),
        "p50_ms": round(statistics.median(warm), 3), "p99_ms": round(_percentile(warm, .99), 3),
        "max_ms": round(warm[-1], 3), "cpu_p50_ms": round(statistics.median(cpu), 3),
        "cpu_p99_ms": round(_percentile(cpu, .99), 3), "text_10kb_ms": round(huge_ms, 3),
        "per_s": round(len(warm) / (sum(warm) / 1000)),
        "rss_before_mb": round(rss_before, 1), "rss_mb": round(_status_mb("VmRSS"), 1),
        "rss_peak_mb": round(_status_mb("VmHWM"), 1),
        "loadavg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
