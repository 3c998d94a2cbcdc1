"""The demo's wait for the batch cut: long enough that the first events fall before it."""

from __future__ import annotations

from lambdalab.boundary import seconds_until_cut_covers
from lambdalab.settings import load_settings


def test_wait_until_a_window_boundary_after_the_first_event_passes_the_skew() -> None:
    settings = load_settings()
    width, skew = settings.batch.window_s * 1000, settings.batch.clock_skew_s * 1000
    first = 10 * width + 1234
    now = first + 3000
    wait = seconds_until_cut_covers(settings, first, now)
    cut_then = ((now + int(wait * 1000) - skew) // width) * width
    assert cut_then > first
    assert wait <= (width + skew) / 1000 + 1
    assert seconds_until_cut_covers(settings, first, first + 3 * width) == 0
