"""One table, one picture and one page of every benchmark: each figure against its baseline.

The result format every benchmark follows (``run(settings)`` returns a dict with these keys):

- ``figures``: a list of :func:`figure` dicts, one per number worth keeping::

      {"bench": "speed", "name": "events/s vs plain consume loop", "unit": "events/s",
       "value": 19972.0, "baseline": 25959.0, "baseline_name": "plain kafka-python loop",
       "ratio": 0.769, "target": "ratio >= 0.7", "met": true,
       "spread": {"of": "ratio", "runs": 3, "min": 0.62, "median": 0.769, "max": 0.81}}

  ``value`` and ``baseline`` are medians over the bench's repeated runs, measured in the
  same run (so the machine's speed cancels out in ``ratio = value / baseline``);
  ``baseline`` is None for a figure with no same-run twin (then ``ratio`` is None too).
  ``target`` is ``"<ratio|value> <op> <number>"`` (op one of ``>= <= > <``) or None, and
  ``met`` says whether the median met it. ``spread`` is min/median/max over the runs of
  what the target judges (the ratio when there is a baseline, else the value).
- ``details_md`` (optional): Markdown lines with the bench's own detail (per-rate tables,
  breakdowns), copied under the bench's heading in docs/bench.md.
- anything else: raw numbers, kept in bench/results/*.json only.

Build figures with :func:`figure` from the per-run lists; :func:`page` renders
docs/bench.md (keeping the hand-written notes below :data:`NOTES_MARK`), :func:`svg` the
bars of the ratios (or of value/target for figures without a baseline).
"""

from __future__ import annotations

import operator
import statistics
from collections.abc import Sequence
from typing import Any

CLIP = 8.0  # bars longer than this many baselines are drawn clipped
NOTES_MARK = "<!-- notes below are hand-written and kept when `make bench` rewrites this page -->"
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def figure(
    bench: str,
    name: str,
    unit: str,
    values: Sequence[float],
    baselines: Sequence[float] | None = None,
    *,
    baseline_name: str | None = None,
    target: str | None = None,
    whole: float | None = None,
) -> dict[str, Any]:
    """One figure from per-run values (and the same runs' baselines), judged on its median.

    With ``whole`` (no baselines) the figure's value and what its target judges is that
    statistic of the whole measurement (a p99 over a whole level, say), and ``values``
    are the same statistic of its parts, given as the spread.

    Args:
        bench: the benchmark (layer) it belongs to.
        name: what it measures, short.
        unit: unit of ``values`` and ``baselines``.
        values: the platform's number in each repeated run.
        baselines: the same-run baseline of each run (same length), or None.
        baseline_name: what the baseline is.
        target: ``"ratio >= 0.7"``, ``"value <= 100"``, ... or None.
        whole: the statistic of the whole measurement, judged instead (see above).
    """
    ratios = [v / b if b else float("nan") for v, b in zip(values, baselines or [], strict=False)]
    judged, of = (ratios, "ratio") if baselines else (list(values), "value")
    median = statistics.median(judged) if judged else float("nan")
    verdict = whole if whole is not None and not baselines else median
    met = None
    if target is not None:
        what, op, bound = target.split()
        if what != of:
            msg = f"figure {name!r}: target on {what} but the spread is of {of}"
            raise ValueError(msg)
        met = bool(_OPS[op](verdict, float(bound)))
    return {
        "bench": bench,
        "name": name,
        "unit": unit,
        "value": _r(verdict if not baselines else statistics.median(values)),
        "baseline": _r(statistics.median(baselines)) if baselines else None,
        "baseline_name": baseline_name,
        "ratio": _r(median) if baselines else None,
        "target": target,
        "met": met,
        "spread": {
            "of": of,
            "runs": len(judged),
            "min": _r(min(judged)),
            "median": _r(median),
            "max": _r(max(judged)),
        },
    }


def _r(x: float) -> float:
    return round(float(x), 4 if abs(x) < 10 else 1)


def figures(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure of every bench in ``results`` (failed benches have none)."""
    out: list[dict[str, Any]] = []
    for name, result in results.items():
        if isinstance(result, dict):
            out.extend(result.get("figures", []) or _legacy(name, result))
    return out


def _spread_values(spread: Any) -> list[float]:
    """[min, median, max] of a bench's spread dict (the median is what a target judges)."""
    if not isinstance(spread, dict) or "median" not in spread:
        return []
    return [spread["min"], spread["median"], spread["max"]]


def _queries(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Figures of bench_queries' result (spreads over its repeats, judged on the median)."""
    rows = [
        ("point query p99, unloaded", "ms", ("point_query", "p99_ms"), "value <= 5"),
        ("point req/s / trivial FastAPI req/s", "ratio", ("point_rps_vs_trivial",), "value >= 0.6"),
        (
            "top-10 over 1M+50k keys, POST /sql/merged p99",
            "ms",
            ("top10_sql", "p99_ms"),
            "value <= 250",
        ),
        ("top-10 over 1M+50k keys, GET /rows p99", "ms", ("top10_rows", "p99_ms"), "value <= 250"),
    ]
    out = []
    for name, unit, path, target in rows:
        found: Any = result
        for part in path:
            found = found.get(part, {}) if isinstance(found, dict) else {}
        values = _spread_values(found)
        if values:
            out.append(figure("queries", name, unit, values, target=target))
    first = (result.get("after_publication") or {}).get("first_top10_sql_ms")
    if first is not None:
        out.append(
            figure(
                "queries",
                "first top-10 SQL after a publication",
                "ms",
                [first],
                target="value <= 2000",
            )
        )
    return out


def _legacy(name: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Figures of a bench that has not moved to the format yet (bench_batch's old shape)."""
    if name == "queries":
        return _queries(result)
    engines = result.get("engines", {}) if name == "batch" else {}
    if not engines:
        return []
    compiled = engines["compiled view (Spark)"]["rows_per_s"]
    return [
        figure(
            "batch",
            "compiled view rows/s vs plain Spark groupBy",
            "rows/s",
            [compiled],
            [engines["plain Spark groupBy"]["rows_per_s"]],
            baseline_name="plain Spark groupBy",
            target="ratio >= 0.8",
        ),
        figure(
            "batch",
            "compiled view rows/s vs DuckDB",
            "rows/s",
            [compiled],
            [engines["DuckDB (local copy)"]["rows_per_s"]],
            baseline_name="DuckDB over a local copy",
        ),
    ]


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.3f}" if abs(x) < 10 else f"{x:,.0f}"


def _met(f: dict[str, Any]) -> str:
    return "-" if f["met"] is None else ("yes" if f["met"] else "**no**")


def table(figs: list[dict[str, Any]]) -> str:
    """A plain-text table of the figures (what ``python -m bench`` prints)."""
    lines = [
        f"{'bench':10} {'figure':46} {'value':>12} {'baseline':>12} {'ratio':>7} "
        f"{'target':>14} {'met':>4}  spread (min/median/max)"
    ]
    for f in figs:
        s = f["spread"]
        lines.append(
            f"{f['bench']:10} {f['name'][:46]:46} {_num(f['value']):>12} "
            f"{_num(f['baseline']):>12} {_num(f['ratio']):>7} {f['target'] or '-':>14} "
            f"{_met(f).strip('*'):>4}  {_num(s['min'])}/{_num(s['median'])}/{_num(s['max'])}"
            f" of {s['of']} over {s['runs']}"
        )
    return "\n".join(lines)


def page(results: dict[str, Any], svg_name: str, notes: str) -> str:
    """docs/bench.md: date, machine, every figure with baseline, ratio, target, spread."""
    figs = figures(results)
    machine = results.get("machine", {})
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench [name ...]`); the raw numbers of each run",
        "are in bench/results/ (not committed). Every ratio is against a baseline measured in",
        "the same run on the same machine; `value` and `baseline` are medians over the bench's",
        "repeated runs, and the spread is min/median/max of what the target judges (a",
        "figure over one long measurement, such as a freshness level, gives the whole",
        "measurement's value and the spread over its parts).",
        "",
        f"- date: {results.get('started', '?')}",
        f"- machine: {machine.get('cpus', '?')} CPUs, {machine.get('cpu_model', '?')}, "
        f"Python {machine.get('python', '?')}, load average at start "
        f"{machine.get('loadavg', '?')}",
        f"- benches in this run: {', '.join(k for k in _benches(results) if _fresh(results[k]))}",
        *[
            f"- carried from the run of {r['carried_from']['started']} (load average at start "
            f"{r['carried_from']['loadavg']}): {k}"
            for k, r in results.items()
            if k in _benches(results) and not _fresh(r)
        ],
        "",
        "| bench | figure | unit | value | baseline | ratio | target | met "
        "| spread (min / median / max) |",
        "|---|---|---|---:|---:|---:|---|---|---|",
    ]
    for f in figs:
        s = f["spread"]
        base = _num(f["baseline"]) + (f" ({f['baseline_name']})" if f["baseline_name"] else "")
        out.append(
            f"| {f['bench']} | {f['name']} | {f['unit']} | {_num(f['value'])} | {base} | "
            f"{_num(f['ratio'])} | {f['target'] or '-'} | {_met(f)} | "
            f"{_num(s['min'])} / {_num(s['median'])} / {_num(s['max'])} "
            f"({s['of']}, {s['runs']} runs) |"
        )
    out += ["", f"![ratios]({svg_name})", ""]
    for name in _benches(results):
        result = results[name]
        out.append(f"## {name}")
        out.append("")
        if not _fresh(result):
            out.append(f"Measured in the run of {result['carried_from']['started']}.\n")
        if "error" in result:
            out.append(f"Failed: `{result['error']}`")
        out.extend(result.get("details_md", []))
        out.append(f"\nWall time of the bench: {result.get('wall_s', '?')} s.\n")
    out += [NOTES_MARK, notes.strip(), ""]
    return "\n".join(out)


def _fresh(result: dict[str, Any]) -> bool:
    """Whether a bench was measured in this run (not carried from an earlier one)."""
    return "carried_from" not in result


def _benches(results: dict[str, Any]) -> list[str]:
    return [k for k, v in results.items() if isinstance(v, dict) and k != "machine"]


def notes_of(existing: str) -> str:
    """The hand-written notes of an existing docs/bench.md (empty when there are none)."""
    _, mark, notes = existing.partition(NOTES_MARK)
    return notes if mark else ""


def svg(figs: list[dict[str, Any]], title: str) -> str:
    """Horizontal bars: ratio = platform / baseline, or value / target bound without one."""
    bars: list[tuple[str, float, bool | None]] = []
    for f in figs:
        x = _bar(f)
        if x is not None:
            bars.append((f"{f['bench']}: {f['name']}", x, f["met"]))
    width, left, bar_h, gap = 1000, 420, 18, 8
    top = min(max([1.0, *(x for _l, x, _m in bars)]), CLIP) * 1.1
    height = 60 + len(bars) * (bar_h + gap)
    scale = (width - left - 120) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{title}</text>',
    ]
    for i, (label, x, met) in enumerate(bars):
        y = 40 + i * (bar_h + gap)
        colour = "#2f6db3" if met is None else ("#2f8f4e" if met else "#c0392b")
        parts.append(f'<text x="10" y="{y + 13}">{_esc(label[:60])}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{min(x, CLIP) * scale:.1f}" height="{bar_h}" '
            f'fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{left + min(x, CLIP) * scale + 4:.1f}" y="{y + 13}">{x:.3f}x</text>'
        )
    x1 = left + scale
    parts.append(
        f'<line x1="{x1:.1f}" y1="30" x2="{x1:.1f}" y2="{height - 10}" '
        'stroke="#555" stroke-dasharray="4"/>'
    )
    parts.append(
        f'<text x="{x1 + 3:.1f}" y="{height - 12}" fill="#555">baseline (or target) = 1; '
        "green: target met, red: missed</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _bar(f: dict[str, Any]) -> float | None:
    if f["ratio"] is not None:
        return float(f["ratio"])
    if f["target"]:
        bound = float(f["target"].split()[2])
        return float(f["value"]) / bound if bound else None
    return None


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
