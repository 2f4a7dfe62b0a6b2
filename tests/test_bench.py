"""``ledger bench``'s modes run end to end on one node and write a sane record (no speed is asserted)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from node import bench

RECORD_KEYS = ("tx_per_s", "p50_ms", "p99_ms", "nodes", "seconds", "cpu", "python", "commit", "date")


def _check_common(record: dict[str, object], mode: str) -> None:
    for key in RECORD_KEYS:
        assert key in record, key
    assert record["mode"] == mode
    assert record["nodes"] == 1
    assert record["committed"] > 0  # type: ignore[operator]
    assert record["tx_per_s"] > 0  # type: ignore[operator]
    assert 0 < record["p50_ms"] <= record["p99_ms"]  # type: ignore[operator]
    assert record["submit_errors"] == {}
    assert record["uncommitted_at_end"] == 0
    assert all(rss > 0 for rss in record["node_rss_mib"])  # type: ignore[attr-defined]


def test_batch_mode_with_reads(tmp_path: Path) -> None:
    record = bench.run_bench(1, 2, txs=3_000, keep_dir=tmp_path / "net", reads_per_s=40)
    _check_common(record, "batch")
    reads = record["reads"]
    assert reads["account"]["count"] > 0  # type: ignore[index]
    assert sum(reads[endpoint]["count"] for endpoint in bench.READ_ENDPOINTS) > 20  # type: ignore[index]
    for endpoint in bench.READ_ENDPOINTS:
        figures = reads[endpoint]  # type: ignore[index]
        assert figures["errors"] == {}, endpoint
        if figures["count"]:
            assert 0 < figures["p50_ms"] <= figures["p99_ms"]


def test_single_mode_with_flood(tmp_path: Path) -> None:
    # enough load for both phases even when one node commits thousands per second (httptools)
    record = bench.run_bench(1, 2, txs=16_000, keep_dir=tmp_path / "net", mode="single", threads=3,
                             flood_threads=2)
    _check_common(record, "single")
    assert record["threads"] == 3
    assert record["baseline"]["committed"] > 0  # type: ignore[index]
    assert record["tx_per_s_without_flood"] > 0  # type: ignore[operator]
    assert not math.isnan(record["flood_ratio"]) and record["flood_ratio"] > 0  # type: ignore[arg-type]
    assert record["flood_requests"] > 0  # type: ignore[operator]
    # every flood request is refused (4xx), or is a batch whose items are all refused (200 with per-item errors)
    assert set(record["flood_statuses"]) <= {"200", "400", "401", "413"}  # type: ignore[arg-type]
    assert len(record["node_rss_mib_before_flood"]) == 1  # type: ignore[arg-type]


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="mode"):
        bench.run_bench(1, 1, mode="nope")
    with pytest.raises(ValueError, match="kill-after"):
        bench.run_bench(1, 1, mode="single", kill_after_s=1.0)
