"""Summaries and tables of ``rxtts bench realistic`` (see :mod:`.realistic`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rxtts.bench._stats import fmt, format_table, percentile
from rxtts.bench.realistic_corpus import (
    GOAL_DEAD_AIR_MS,
    GOAL_TTFA_P50_MS,
    GOAL_TTFA_P90_MS,
)
from rxtts.bench.realistic_sections import format_capacity

__all__ = ["format_result", "summary"]


def _pct(values: Sequence[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def summary(turns: Sequence[dict[str, Any]], full: bool) -> dict[str, Any]:
    def col(key: str, rows: Sequence[dict[str, Any]] = turns) -> list[float]:
        return [float(r[key]) for r in rows if r.get(key) is not None]

    ttfa = col("ttfa_ms")
    s: dict[str, Any] = {
        "ttfa_p50_ms": _pct(ttfa, 50),
        "ttfa_p90_ms": _pct(ttfa, 90),
        "ttfa_max_ms": max(ttfa, default=None),
        "wait_p50_ms": _pct(col("wait_ms"), 50),
        "engine_p50_ms": _pct(col("engine_ms"), 50),
        "engine_p90_ms": _pct(col("engine_ms"), 90),
        "post_p50_ms": _pct(col("post_ms"), 50),
        "chunk0_chars_p50": _pct(col("chunk0_chars"), 50),
        "tokens_before_chunk0_p50": _pct(col("tokens_before_chunk0"), 50),
        "turns": len(turns),
    }
    s["ttfa_goal_met"] = bool(
        ttfa and s["ttfa_p50_ms"] <= GOAL_TTFA_P50_MS and s["ttfa_p90_ms"] <= GOAL_TTFA_P90_MS
    )
    if full:
        plain = [r for r in turns if not r["tool_call"]]
        tool = [r for r in turns if r["tool_call"]]
        dead = col("dead_air_ms", plain)
        s["dead_air_p50_ms"] = _pct(dead, 50)
        s["dead_air_max_ms"] = max(dead, default=None)
        s["dead_air_failures"] = [  # tool-call answers too: the stall is the LLM's, the silence ours
            {"answer": r["answer"], "dead_air_ms": r["dead_air_ms"]}
            for r in turns
            if r["dead_air_ms"] > GOAL_DEAD_AIR_MS
        ]
        s["dead_air_goal_met"] = not s["dead_air_failures"]
        where = {"chunk 0, frame 1": 0.0, "chunk 0, later": 0.0, "later chunks": 0.0}
        for r in plain:
            for g in r["gaps"]:
                key = (
                    "later chunks"
                    if g["chunk"]
                    else "chunk 0, frame 1"
                    if g["frame"] == 1
                    else "chunk 0, later"
                )
                where[key] += g["ms"]
        s["dead_air_total_by_place_ms"] = where
        tool_dead = col("dead_air_ms", tool)
        s["tool_call_dead_air_p50_ms"] = _pct(tool_dead, 50)
        s["tool_call_dead_air_max_ms"] = max(tool_dead, default=None)
        s["all_completed"] = all(r["completed"] for r in turns)
    return s


def format_result(result: dict[str, Any]) -> str:
    """The tables of a :func:`run` result."""
    goals = result["goals"]
    words = result.get("intelligibility") or {}
    wer_of = {name: v["wer"] for name, v in words.get("variants", {}).items()}
    wer_skip = result["skipped"].get("intelligibility", "-")
    rows = []
    for name, v in result["variants"].items():
        s = v["summary"]
        full = v["full_turns"]
        wer = wer_of.get(name)
        rows.append(
            [
                f"{name} ({v['preset']}, {v['server']} decode)"
                if v.get("what_if") is None
                else f"{name} (what-if, {v['server']} decode)",
                fmt(s["ttfa_p50_ms"], 0),
                fmt(s["ttfa_p90_ms"], 0),
                fmt(s["ttfa_max_ms"], 0),
                fmt(s["wait_p50_ms"], 0),
                fmt(s["engine_p50_ms"], 0),
                fmt(s["post_p50_ms"], 0),
                fmt(s["chunk0_chars_p50"], 0),
                fmt(s["dead_air_p50_ms"], 0) if full else "-",
                fmt(s["dead_air_max_ms"], 0) if full else "-",
                fmt(s["tool_call_dead_air_max_ms"], 0) if full else "-",
                (f"{100 * wer:.1f} %" if wer is not None else "-") if full else "-",
            ]
        )
    headers = [
        "variant",
        "TTFA p50",
        "p90",
        "max",
        "wait p50",
        "engine p50",
        "post p50",
        "chunk0 chars",
        "dead air p50",
        "max",
        "tool-call max",
        "WER",
    ]
    title = (
        f"Realistic answers ({result['engine']}, {result['answers']} answers, "
        f"{result['tool_call_answers']} with a {result['stall_s']:g} s tool-call stall; "
        f"{result['tokens_per_second']:g} tokens/s +-{100 * result['jitter']:.0f} %, split mid-word; "
        "ms from the first token to the first non-silent sample; dead air per answer)"
    )
    parts = [format_table(headers, rows, title)]
    verdicts = []
    for name, v in result["variants"].items():
        s = v["summary"]
        line = f"{name}: TTFA {'met' if s['ttfa_goal_met'] else 'NOT met'}"
        if v["full_turns"]:
            fails = ", ".join(f"{f['answer']} {f['dead_air_ms']:.0f}" for f in s["dead_air_failures"])
            line += f", dead air {'met' if s['dead_air_goal_met'] else 'NOT met (' + fails + ')'}"
        if v["full_turns"]:
            by = s["dead_air_total_by_place_ms"]
            line += (
                " [where, summed over the answers without a tool call: "
                + ", ".join(f"{k} {ms:.0f} ms" for k, ms in by.items())
                + "]"
            )
        verdicts.append(line)
    parts.append(
        f"goals: TTFA p50 <= {goals['ttfa_p50_ms']:g} ms, p90 <= {goals['ttfa_p90_ms']:g} ms; dead air <= "
        f"{goals['dead_air_ms']:g} ms per answer, tool-call answers included -> " + "; ".join(verdicts)
    )
    if words:
        parts.append(
            "WER: faster-whisper "
            + words["model"]
            + "; "
            + ", ".join(f"{n} {v['errors']}/{v['words']} words" for n, v in words["variants"].items())
            + " (reference: normalize_text(answer).text)"
        )
    else:
        parts.append(f"WER: {wer_skip}")
    eng = result.get("engine_section")
    if eng:
        erows = [
            [
                r["sentence"],
                fmt(r["streaming"]["first_ms"]),
                fmt(r["whole"]["first_ms"]),
                fmt(r["streaming"]["total_ms"]),
                fmt(r["whole"]["total_ms"]),
            ]
            for r in eng["first_audio"]
        ]
        parts.append(
            format_table(
                [
                    "sentence",
                    "first ms (stream)",
                    "first ms (whole)",
                    "total ms (stream)",
                    "total ms (whole)",
                ],
                erows,
                f"Engine alone, time to first audio, p50 of {eng['repeats']} alternating calls "
                f"(goal <= {goals['engine_first_audio_p50_ms']:g} ms)",
            )
            + f"\ngap between two blocks of a streaming call (the decode of one window, windows "
            f"{eng['windows']} frames; 25 and 60 words): p50 {fmt(eng['block_gap_ms']['p50'])} ms, "
            f"max {fmt(eng['block_gap_ms']['max'])} ms"
        )
    else:
        parts.append(f"engine alone: {result['skipped'].get('engine', '-')}")
    b = result["bargein"]
    parts.append(
        f"Barge-in mid-answer (streaming server, {len(b['turns'])} turns, dispose 100-400 ms after the "
        f"first audio): ack p50 {fmt(b['ack_ms']['p50'])} ms, p99 {fmt(b['ack_ms']['p99'])} ms "
        f"(goal <= {goals['ack_p99_ms']:g} -> {'met' if b['ack_goal_met'] else 'NOT met'}); engine stop "
        f"p50 {fmt(b['engine_stop_ms']['p50'])} ms, max {fmt(b['engine_stop_ms']['max'])} ms "
        f"({b['engine_stop_ms']['n']} calls running at the cancel)"
    )
    cap = result.get("capacity")
    if cap:
        parts.append(format_capacity(cap))
    else:
        parts.append(f"capacity: {result['skipped'].get('capacity', '-')}")
    parts.append(f"load average before {result['load_average_before']}, after {result['load_average_after']}")
    return "\n\n".join(parts)
