"""``rxtts bench --quick --engine tone``: every benchmark runs and writes sane JSON.

No timing thresholds (benchmarks are never timed tests): the checks are structure,
counts as requested, internal consistency (p50 <= p95, TTFA = engine + rest, ratios
positive) and the protocol facts the barge-in benchmark observes. All servers bind
127.0.0.1 on port 0 (in-process or ``python -m rxtts.bench._stats serve``).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest

from rxtts.bench._stats import format_table, percentile, summarize
from rxtts.bench.client_overhead import long_text
from rxtts.bench.scale import stall_seconds
from rxtts.bench.ttfa import TEXT, reference_index, tokenize
from rxtts.cli import bench as cli
from rxtts.config import BALANCED, HIGH_QUALITY, LOW_LATENCY

PRESET_NAMES = ["low-latency", "balanced", "high-quality"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], int]:
    out = tmp_path_factory.mktemp("bench")
    code = cli.main(["all", "--quick", "--engine", "tone", "--out", str(out)])
    combined = json.loads((out / "results.json").read_text())
    return out, combined, code


def _sane(summary: dict[str, Any], n: int | None = None) -> None:
    if n is not None:
        assert summary["n"] == n
    assert summary["min"] <= summary["p50"] <= summary["p95"] <= summary["p99"] <= summary["max"]


# -- pure helpers ------------------------------------------------------------------------------


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 99) == 10
    assert percentile([0, 100], 95) == pytest.approx(95)
    s = summarize([3, 1, 2])
    assert (s.n, s.min, s.p50, s.max, s.mean) == (3, 1, 2, 3, 2)
    assert math.isnan(summarize([]).p50)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_format_table_aligns_columns() -> None:
    table = format_table(["name", "value"], [["a", "1.0"], ["long name", "22.5"]], "T")
    lines = table.splitlines()
    assert lines[0] == "T"
    assert len({len(line) for line in lines[1:]}) == 1  # every row as wide as the header


def test_reference_token_is_the_one_after_the_boundary() -> None:
    tokens = tokenize(TEXT)
    assert "".join(tokens) == TEXT
    ref, chunk0 = reference_index(tokens, LOW_LATENCY)
    # sentences() confirms "that." only on the next non-space character: " The".
    assert tokens[ref - 1] == "." and tokens[ref] == " The"
    assert chunk0 == "Sure, I can help with that."
    b_ref, b_chunk = reference_index(tokens, BALANCED)
    h_ref, h_chunk = reference_index(tokens, HIGH_QUALITY)
    assert 80 <= len(b_chunk) < 120 <= len(h_chunk)
    assert ref < b_ref < h_ref


def test_stall_counts_gaps_after_the_buffer_runs_out() -> None:
    assert stall_seconds(0.0, [(0.0, 1.0), (0.5, 1.0)]) == 0.0
    assert stall_seconds(0.0, [(0.0, 1.0), (1.5, 1.0), (2.0, 1.0)]) == pytest.approx(0.5)


# -- the quick suite ------------------------------------------------------------------------------


def test_suite_succeeds_and_writes_every_file(results: tuple[Path, dict[str, Any], int]) -> None:
    out, combined, code = results
    assert code == 0, {k: v.get("error") for k, v in combined["benchmarks"].items()}
    assert set(combined["benchmarks"]) == set(cli.BENCHMARKS)
    for name in cli.BENCHMARKS:
        entry = combined["benchmarks"][name]
        assert "error" not in entry
        if name in cli.PIPER_ONLY:  # --engine tone: reported, not run
            assert entry["skipped"].startswith("needs --engine piper")
            continue
        assert (out / f"{name}.json").is_file()
        assert entry["table"].strip()
        assert entry["seconds"] >= 0
    machine = combined["machine"]
    assert machine["cpu_model"] and machine["logical_cores"] >= 1
    assert machine["ram_gb"] > 0 and machine["python"].startswith("CPython")
    assert machine["versions"]["numpy"] and machine["date"]
    assert combined["quick"] is True and combined["engine"] == "tone"


def test_ttfa_structure(results: tuple[Path, dict[str, Any], int]) -> None:
    r = results[1]["benchmarks"]["ttfa"]["result"]
    assert set(r["modes"]) == {"process", "in-process"}
    for presets in r["modes"].values():
        assert list(presets) == PRESET_NAMES
        for p in presets.values():
            assert len(p["turns"]) == r["turns_per_preset"] == 3
            assert p["chunk0_matches_engine_text"]
            for key in ("ttfa_ms", "engine_ms", "rest_ms", "pre_engine_ms", "post_engine_ms"):
                _sane(p["summary"][key], 3)
            for t in p["turns"]:
                # Causality across processes (one system-wide monotonic clock).
                assert t["engine_ms"] >= 0 and t["pre_engine_ms"] >= 0 and t["post_engine_ms"] >= 0
                assert t["ttfa_from_first_token_ms"] > t["ttfa_ms"]  # chunk 0 needs several tokens
            assert 0 < p["engine_share_p50"] <= 1
    # A later reference token for presets with bigger first chunks.
    refs = [r["modes"]["process"][n]["reference_token_index"] for n in PRESET_NAMES]
    assert refs == sorted(refs) and len(set(refs)) == 3


def test_client_overhead_structure(results: tuple[Path, dict[str, Any], int]) -> None:
    r = results[1]["benchmarks"]["client"]["result"]
    for impl in ("rxtts", "sdk"):
        t = r["ttfa"][impl]
        assert len(t["turns"]) == r["ttfa_turns"] == 3
        _sane(t["ttfa_first_token_ms"], 3)
        assert t["ttfa_first_token_ms"]["p50"] >= t["ttfa_ref_token_ms"]["p50"]
        _sane(t["engine_ms"], 3)
        assert t["rest_ms"]["min"] >= 0  # the engine's share never exceeds the whole
        tp = r["throughput"][impl]
        assert len(tp["turns"]) == r["throughput_turns"] == 2
        # Every character becomes 10 ms of tone: the whole text arrived.
        assert tp["audio_seconds"] == pytest.approx(len(long_text(r["throughput_chars"])) * 0.01, rel=0.02)
        assert tp["frames"] > 0 and tp["frames_per_s"] > 0 and tp["cpu_ms_per_audio_s"] > 0
    for value in r["ratios_rxtts_over_sdk"].values():
        assert value is not None and value > 0


def test_bargein_structure(results: tuple[Path, dict[str, Any], int]) -> None:
    r = results[1]["benchmarks"]["bargein"]["result"]
    for variant in ("rxtts", "wire"):
        assert len(r[variant]["turns"]) == r["turns"] == 5
        _sane(r[variant]["summary"]["ack_ms"], 5)
        for t in r[variant]["turns"]:
            assert 100 <= t["delay_ms"] <= 400
            assert t["ack_ms"] > 0
    # PROTOCOL S-5 as observed on the wire, and the client drops late frames.
    wire = r["wire"]["summary"]
    assert wire["audio_frames_after_ack"]["max"] == 0
    assert wire["final_or_closed_after_cancel"]["max"] == 0
    assert r["rxtts"]["summary"]["frames_delivered_after_dispose"]["max"] == 0


def test_scale_structure(results: tuple[Path, dict[str, Any], int]) -> None:
    r = results[1]["benchmarks"]["scale"]["result"]
    levels = r["streaming"]["levels"]
    assert [lv["sessions"] for lv in levels] == [1, 2]
    for lv in levels:
        assert len(lv["per_session"]) == lv["sessions"]
        assert all(s["audio_s"] > 0 and s["speed"] > 0 for s in lv["per_session"])
        _sane(lv["speed"], lv["sessions"])
        assert lv["server_rss_mb"] > 0
    assert r["streaming"]["max_sessions_faster_than_real_time"] in (0, 1, 2)
    conns = r["connections"]["levels"]
    assert [lv["connections"] for lv in conns] == [5, 10]
    for lv in conns:
        assert lv["turns_ok"] == lv["connections"]
        assert lv["rss_base_mb"] > 0 and lv["rss_idle_mb"] > 0
        _sane(lv["first_frame_ms"], lv["connections"])


def test_segmenter_structure(results: tuple[Path, dict[str, Any], int]) -> None:
    r = results[1]["benchmarks"]["segmenter"]["result"]
    assert {"rxtts_streaming", "pysbd"} <= set(r["accuracy"])
    for acc in r["accuracy"].values():
        assert 0 <= acc["exact_match"] <= 1 and 0 <= acc["f1"] <= 1
    assert r["timing"]["tokens"] > 0 and r["timing"]["median_us_per_token"] > 0


def test_a_benchmark_whose_peer_is_missing_is_skipped_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16.4: after the README's first install (no [dev]) `rxtts bench` reports
    what is missing instead of a traceback or an empty column."""
    import importlib.util

    real = importlib.util.find_spec

    def without_sdk(name: str, *args: Any) -> Any:
        return None if name in ("kugelaudio", "pysbd") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_sdk)
    code = cli.main(["client", "--engine", "tone", "--quick", "--out", str(tmp_path)])
    assert code == 0
    err = capsys.readouterr().err
    assert "client skipped: needs kugelaudio (pip install 'rxtts[bench]')" in err
    assert "Traceback" not in err
    combined = json.loads((tmp_path / "results.json").read_text())
    assert combined["benchmarks"]["client"]["skipped"].startswith("needs kugelaudio")
    assert cli.missing_peers("segmenter", "tone") == ["pysbd (pip install 'rxtts[bench]')"]
    assert cli.missing_peers("normalize", "tone") == []


# -- realistic answers (issue 12) -------------------------------------------------------------------


def test_realistic_corpus_is_what_issue_12_asks_for() -> None:
    from rxtts.bench.realistic import split_sentences
    from rxtts.bench.realistic_corpus import CORPUS, STALL_MARK

    assert len(CORPUS) >= 20
    assert len({a.name for a in CORPUS}) == len(CORPUS)
    for a in CORPUS:
        parts = split_sentences(a.text)
        assert 2 <= len(parts) <= 5, a.name
        assert 60 <= len(parts[0]) <= 150, a.name
        assert STALL_MARK not in a.text
        if a.stall_at is not None:
            assert 0 < a.stall_at < len(a.text)
    assert sum(a.stall_at is not None for a in CORPUS) >= 2
    assert sum(any(c.isdigit() for c in a.text) for a in CORPUS) >= 10
    assert any("First," in a.text and "Second," in a.text for a in CORPUS)  # a list


def test_realistic_schedule_is_seeded_jittered_and_stalls() -> None:
    from rxtts.bench.realistic import PACE_S, STALL_S, schedule
    from rxtts.bench.realistic_corpus import CORPUS

    tool = next(a for a in CORPUS if a.stall_at is not None)
    plan = schedule(tool, 7)
    assert plan == schedule(tool, 7) and plan != schedule(tool, 8)
    assert "".join(t for _, t in plan) == tool.text
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(plan)]
    assert all(g > 0 for g in gaps)
    assert max(gaps) >= STALL_S  # the tool call
    assert sum(g < STALL_S for g in gaps) == len(gaps) - 1
    plain = [g for g in gaps if g < STALL_S]
    assert min(plain) < PACE_S < max(plain)  # jitter around 40 tokens/s
    assert any(not t.startswith(" ") and t[0].isalpha() for _, t in plan[1:])  # split mid-word


def test_word_error_rate_compares_spoken_forms() -> None:
    from rxtts.bench.whisper import wer, word_errors, words

    assert words("It costs $3.50, OK?") == words("it costs three dollars and fifty cents ok")
    assert wer("The high is 18 degrees.", "the high is eighteen degrees") == (0, 5)
    assert word_errors(["a", "b", "c"], ["a", "x", "c", "d"]) == 2
    assert wer("Hello there.", "") == (2, 2)


def test_realistic_structure(results: tuple[Path, dict[str, Any], int]) -> None:
    r = results[1]["benchmarks"]["realistic"]["result"]
    assert r["answers"] == 2 and r["tool_call_answers"] == 1
    assert list(r["variants"]) == ["stream", "balanced", "stream, max_words=12", "stream, no urgency"]
    assert set(r["skipped"]) == {"whole", "intelligibility", "engine", "capacity"}
    for v in r["variants"].values():
        s = v["summary"]
        assert len(v["turns"]) == s["turns"] == 2
        assert s["ttfa_p50_ms"] <= s["ttfa_p90_ms"] <= s["ttfa_max_ms"]
        for t in v["turns"]:
            assert t["ttfa_ms"] > 0 and t["frames"] > 0 and t["chunk0_text"]
            assert t["wait_ms"] >= 0 and t["engine_ms"] >= 0
            if v["full_turns"]:
                assert t["completed"] and t["audio_s"] > 0 and t["dead_air_ms"] >= 0
        if v["full_turns"]:
            assert isinstance(s["dead_air_goal_met"], bool) and s["all_completed"]
            assert set(s["dead_air_total_by_place_ms"]) == {
                "chunk 0, frame 1",
                "chunk 0, later",
                "later chunks",
            }
    # The phrase-aware chunk 0 is shorter than the balanced preset's.
    assert (
        r["variants"]["stream"]["summary"]["chunk0_chars_p50"]
        < (r["variants"]["balanced"]["summary"]["chunk0_chars_p50"])
    )
    assert len(r["bargein"]["turns"]) == 3
    _sane(r["bargein"]["ack_ms"], 3)
    table = results[1]["benchmarks"]["realistic"]["table"]
    assert "Realistic answers" in table and "WER: skipped" in table
