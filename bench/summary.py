"""One table and one picture of every benchmark: the platform against its same-run baseline.

Each row is (layer, what, platform, baseline, ratio = platform / baseline) taken from the
JSON the benchmarks return; the SVG draws the ratios as bars with the baseline at 1.0.
"""

from __future__ import annotations

from typing import Any

CLIP = 8.0  # bars longer than this many baselines are drawn clipped
Row = tuple[str, str, float, float]  # layer, what, platform value, baseline value


def rows(results: dict[str, Any]) -> list[Row]:
    """Summary rows from the benchmarks' results (missing or failed benches are skipped)."""
    out: list[Row] = []
    ing = results.get("ingest", {})
    if "baseline_plain_producer_eps" in ing:
        base = ing["baseline_plain_producer_eps"]
        out.append(
            ("ingest", "HTTP POST /events, events/s vs kafka-python", ing["http_batch_eps"], base)
        )
        out.append(("ingest", "generator, events/s vs kafka-python", ing["generator_eps"], base))
    engines = results.get("batch", {}).get("engines", {})
    if engines:
        compiled = engines["compiled view (Spark)"]["rows_per_s"]
        out.append(
            (
                "batch",
                "compiled view rows/s vs plain Spark groupBy",
                compiled,
                engines["plain Spark groupBy"]["rows_per_s"],
            )
        )
        out.append(
            (
                "batch",
                "compiled view rows/s vs DuckDB",
                compiled,
                engines["DuckDB (local copy)"]["rows_per_s"],
            )
        )
    speed = {r["name"]: r for r in results.get("speed", {}).get("rows", [])}
    if speed:
        plain = speed["plain kafka-python consume"]
        layer = speed["speed layer (consume+aggregate+Redis)"]
        out.append(
            (
                "speed",
                "events/s vs plain consume loop",
                layer["events_per_s"],
                plain["events_per_s"],
            )
        )
        out.append(
            (
                "speed",
                "CPU µs/event vs plain consume loop",
                layer["cpu_us_per_event"],
                plain["cpu_us_per_event"],
            )
        )
    serving = results.get("serving", {})
    if "merged_query" in serving:
        merged, trivial = serving["merged_query"], serving["trivial_fastapi"]
        out.append(("serving", "p50 ms vs trivial FastAPI", merged["p50_ms"], trivial["p50_ms"]))
        out.append(("serving", "p99 ms vs trivial FastAPI", merged["p99_ms"], trivial["p99_ms"]))
        out.append(("serving", "req/s vs trivial FastAPI", merged["rps"], trivial["rps"]))
        out.append(
            ("serving", "p50 ms vs raw Redis GET", merged["p50_ms"], serving["redis_get"]["p50_ms"])
        )
    return out


def table(summary: list[Row]) -> str:
    """A plain-text table of the summary rows."""
    lines = [f"{'layer':8} {'measure':48} {'platform':>12} {'baseline':>12} {'ratio':>8}"]
    for layer, what, value, base in summary:
        ratio = value / base if base else float("nan")
        lines.append(f"{layer:8} {what:48} {value:12.3f} {base:12.3f} {ratio:8.3f}")
    return "\n".join(lines)


def svg(summary: list[Row], title: str) -> str:
    """Horizontal bars of ratio = platform / baseline on a log-free linear scale."""
    width, left, bar_h, gap = 1000, 420, 18, 8
    ratios = [v / b if b else 0.0 for _l, _w, v, b in summary]
    top = min(max([1.0, *ratios]), CLIP) * 1.1
    height = 60 + len(summary) * (bar_h + gap)
    scale = (width - left - 120) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{title}</text>',
    ]
    for i, ((layer, what, _v, _b), ratio) in enumerate(zip(summary, ratios, strict=True)):
        y = 40 + i * (bar_h + gap)
        parts.append(f'<text x="10" y="{y + 13}">{layer}: {what}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{ratio * scale:.1f}" height="{bar_h}" '
            'fill="#2f6db3"/>'
        )
        parts.append(f'<text x="{left + ratio * scale + 4:.1f}" y="{y + 13}">{ratio:.3f}x</text>')
    x1 = left + scale
    parts.append(
        f'<line x1="{x1:.1f}" y1="30" x2="{x1:.1f}" y2="{height - 10}" '
        'stroke="#c0392b" stroke-dasharray="4"/>'
    )
    parts.append(f'<text x="{x1 + 3:.1f}" y="{height - 12}" fill="#c0392b">baseline = 1</text>')
    parts.append("</svg>")
    return "\n".join(parts)
