"""The benchmark result format: medians, same-run ratios, targets judged, spread, the page."""

from __future__ import annotations

from bench.summary import NOTES_MARK, figure, notes_of, page


def test_figure_judges_the_median_ratio_and_reports_the_spread() -> None:
    f = figure("speed", "eps", "events/s", [70, 90, 50], [100, 100, 100], target="ratio >= 0.7")
    assert (f["value"], f["baseline"], f["ratio"], f["met"]) == (70, 100, 0.7, True)
    assert f["spread"] == {"of": "ratio", "runs": 3, "min": 0.5, "median": 0.7, "max": 0.9}
    missed = figure("speed", "cpu", "µs", [30, 40], [10, 10], target="ratio <= 1.5")
    assert missed["met"] is False and missed["ratio"] == 3.5


def test_figure_without_baseline_judges_its_value() -> None:
    f = figure("freshness", "p99", "ms", [120.0, 80.0, 95.0], target="value <= 100")
    assert (f["ratio"], f["met"], f["spread"]["of"], f["spread"]["max"]) == (
        None,
        True,
        "value",
        120,
    )


def test_figure_over_parts_judges_the_whole() -> None:
    # a level's p99 over all its probes, with the p99 of each third as the spread
    f = figure("freshness", "p99", "ms", [80.0, 90.0, 95.0], target="value <= 100", whole=140.0)
    assert (f["value"], f["met"], f["spread"]["median"], f["spread"]["max"]) == (140, False, 90, 95)
    ok = figure("freshness", "p99", "ms", [80.0, 150.0, 95.0], target="value <= 100", whole=99.0)
    assert (ok["value"], ok["met"]) == (99, True)


def test_page_lists_every_figure_and_keeps_the_notes() -> None:
    results = {
        "started": "2026-11-27T08:00:00+00:00",
        "machine": {"cpus": 2},
        "speed": {"figures": [figure("speed", "eps", "ev/s", [1.0], [2.0], target="ratio >= 0.7")]},
    }
    text = page(results, "bench.svg", "kept by hand")
    assert "| speed | eps | ev/s |" in text and "| **no** |" in text
    assert notes_of(text).strip() == "kept by hand" and NOTES_MARK in text


def test_the_query_bench_has_figures_judged_on_its_medians() -> None:
    from bench.summary import figures

    spread = lambda lo, mid, hi: {"min": lo, "median": mid, "max": hi}  # noqa: E731
    result = {
        "point_query": {"p99_ms": spread(3.4, 3.75, 3.9)},
        "point_rps_vs_trivial": spread(0.46, 0.64, 0.76),
        "top10_sql": {"p99_ms": spread(218, 223, 232)},
        "top10_rows": {"p99_ms": spread(200, 204, 318)},
        "after_publication": {"first_top10_sql_ms": 288.0},
    }
    found = {f["name"]: f for f in figures({"queries": result})}
    assert len(found) == 5
    assert found["point query p99, unloaded"]["met"] is True
    assert found["point req/s / trivial FastAPI req/s"]["value"] == 0.64
    assert found["top-10 over 1M+50k keys, GET /rows p99"]["met"] is True
    result["top10_sql"]["p99_ms"] = spread(300, 310, 320)
    slow = {f["name"]: f for f in figures({"queries": result})}
    assert slow["top-10 over 1M+50k keys, POST /sql/merged p99"]["met"] is False


def test_a_partial_run_carries_the_other_benches_with_their_own_date() -> None:
    from bench.__main__ import carried

    earlier = {
        "started": "2026-11-27T08:00:00+00:00",
        "machine": {"loadavg": "1.00 1.00 1.00"},
        "batch": {"figures": [figure("batch", "small cycle", "s", [4.0], target="value <= 10")]},
        "speed": {"figures": [figure("speed", "old eps", "ev/s", [1.0], [2.0])]},
    }
    now = {
        "started": "2026-11-27T15:00:00+00:00",
        "machine": {"cpus": 2},
        "speed": {"figures": [figure("speed", "new eps", "ev/s", [3.0], [2.0])]},
    }
    text = page({**now, **carried(earlier, now)}, "bench.svg", "")
    assert "small cycle" in text and "new eps" in text
    assert "old eps" not in text, "a bench this run repeated is not carried"
    assert "- benches in this run: speed" in text
    assert "carried from the run of 2026-11-27T08:00:00+00:00" in text
    assert "): batch" in text
