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


def test_page_lists_every_figure_and_keeps_the_notes() -> None:
    results = {
        "started": "2026-11-27T08:00:00+00:00",
        "machine": {"cpus": 2},
        "speed": {"figures": [figure("speed", "eps", "ev/s", [1.0], [2.0], target="ratio >= 0.7")]},
    }
    text = page(results, "bench.svg", "kept by hand")
    assert "| speed | eps | ev/s |" in text and "| **no** |" in text
    assert notes_of(text).strip() == "kept by hand" and NOTES_MARK in text
