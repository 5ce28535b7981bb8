"""The benchmark script still runs end to end (its figures are read by people, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark_places_calls_through_sipguard(tmp_path: Path):
    """bench/bench_calls.py --quick completes, and every call of its first step went through."""
    output = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_calls.py"), "--quick",
         "--targets", "sipguard", "--json", str(output)],
        capture_output=True, text=True, timeout=240, cwd=REPO, stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "sipguard" in completed.stdout and "KiB/call" in completed.stdout
    results = json.loads(output.read_text())
    (sipguard,) = [target for target in results["targets"] if target["target"] == "sipguard"]
    first = sipguard["steps"][0]
    assert first["passed"], first["reasons"]
    assert first["uac"]["SuccessfulCall"] == first["calls"] > 0
    assert sipguard["latency"]["latency_ms"]["trying"]["samples"] > 0
    assert sipguard["memory"]["stats_at_plateau"]["calls"] == sipguard["memory"]["calls"]


def test_quick_pin_benchmark_serves_the_ivr_capacity_and_bridges_every_call(tmp_path: Path):
    """bench/bench_pin.py --quick: one IVR worker serves 4 challenges at once and refuses the
    rest with 403; every PIN call of the setup run is bridged and has a re-INVITE figure."""
    output = tmp_path / "bench-pin.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_pin.py"), "--quick", "--hold", "2",
         "--json", str(output)],
        capture_output=True, text=True, timeout=240, cwd=REPO, stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads(output.read_text())
    (capacity,) = results["capacity"]
    assert (capacity["bridged"], capacity["refused_403"], capacity["peak_ivr_sessions"]) == (
        4, 4, 4)
    setup = results["setup"]
    assert setup["successful"] == setup["calls"] == 20
    assert setup["reinvite_step_ms"]["p50"] is not None


def test_quick_edge_benchmark_keeps_the_pbx_calls_and_bans_the_flood(tmp_path: Path):
    """bench/bench_edge.py --quick: every PBX call placed during the flood succeeds, the
    flood is dropped before parsing and its source ends up banned."""
    output = tmp_path / "bench-edge.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_edge.py"), "--quick",
         "--json", str(output)],
        capture_output=True, text=True, timeout=240, cwd=REPO, stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads(output.read_text())
    during = results["during_flood"]
    assert during["pbx"]["successful"] == during["pbx"]["calls"] > 0, during
    assert during["pbx"]["failed"] == 0, during
    assert during["edge"]["flood_source_banned"], during["edge"]
    assert during["edge"]["dropped_total"] > 0, during["edge"]
    assert results["flood_alone"]["edge"]["flood_source_banned"], results["flood_alone"]


def test_quick_stream_benchmark_calls_over_every_transport_and_refuses_the_connection_flood(
        tmp_path: Path):
    """bench/bench_streams.py --quick: every call over UDP, TCP and TLS succeeds, and a
    stranger's connections beyond the per-source limit are closed at once."""
    output = tmp_path / "bench-streams.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_streams.py"), "--quick",
         "--json", str(output)],
        capture_output=True, text=True, timeout=240, cwd=REPO, stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads(output.read_text())
    for transport in ("udp", "tcp", "tls"):
        outcome = results["transports"][transport]
        assert outcome["successful"] == outcome["calls"] > 0, (transport, outcome)
        assert outcome["invite_to_200_ms"]["samples"] == outcome["calls"], (transport, outcome)
    flood = results["connection_flood"]
    assert flood["connections"]["kept_open"] == 32, flood  # the default per-source limit
    assert flood["refused_by_sipguard"]["max_connections_per_source"] == (
        flood["connections"]["attempted"] - 32), flood
    assert flood["pbx"]["failed"] == 0, flood


def test_quick_cdr_benchmark_stores_every_record_in_both_databases(tmp_path: Path):
    """bench/bench_cdr.py --quick: every record reaches SQLite and PostgreSQL, straight and
    through the spool, and handing one over costs microseconds."""
    output = tmp_path / "bench-cdr.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_cdr.py"), "--quick", "--json", str(output)],
        capture_output=True, text=True, timeout=240, cwd=REPO, stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads(output.read_text())
    for database in ("sqlite", "postgresql"):
        for way in ("sink", "recorder"):
            outcome = results[database][way]
            assert outcome["stored"] == outcome["records"] == 2000, (database, way, outcome)
            assert outcome["records_per_second"] > 0
        assert results[database]["recorder"]["record_call_us"]["p99"] < 1000


def test_dashboard_benchmark_times_every_page_on_a_small_database(tmp_path: Path):
    """bench/bench_dashboard.py --records 3000: every page it times answers 200 (the script
    fails otherwise) and the figures are printed as JSON for each page."""
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_dashboard.py"), "--records", "3000",
         "--repeat", "1"],
        capture_output=True, text=True, timeout=240, cwd=REPO / "bench",
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert figures["records"] == 3000
    assert "/" in figures["pages"] and "/widgets?since=30d" in figures["pages"]
    assert all(page["median_ms"] > 0 for page in figures["pages"].values())
