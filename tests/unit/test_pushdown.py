"""``/rows`` pushed down into DuckDB (serving.pushdown) against the Python path (serving.selection).

The Python path is the oracle here (tests/unit/test_selection.py checks it against plain
arithmetic): for random cells in both parts, every filter form, group-by, rollup and
order, every page of a cursor walk must equal the Python path's page, row for row.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from serving.mergedsql import realtime_table
from serving.pushdown import select_page, supported
from serving.selection import KeyFilter, Order, Selection, page, rows
from views.definition import Measure, ViewDef

pytestmark = pytest.mark.unit
HOUR = 3_600_000
VIEW = ViewDef(
    name="by_url_referrer",
    stream="pageviews",
    keys=("url", "referrer"),
    bucket_s=3600,
    measures=(
        Measure("views", "count"),
        Measure("total", "sum", "bytes"),
        Measure("low", "min", "bytes"),
        Measure("top", "max", "bytes"),
    ),
)
Cells = dict[str, dict[int, dict[str, Any]]]


def _cells(rng: random.Random, n: int) -> Cells:
    out: Cells = {}
    for _ in range(n):
        key = f"/{rng.choice('abc')}{rng.randrange(6)}\x1f{rng.choice(['g', 'news', '(none)'])}"
        low = rng.choice([None, rng.randrange(100)])
        row = {"views": rng.randrange(1, 4), "total": rng.choice([2**70, rng.randrange(50)])}
        row |= {"low": low, "top": None if low is None else low + rng.randrange(9)}
        out.setdefault(key, {})[rng.randrange(8) * HOUR] = row
    return out


SELECTIONS = [
    (KeyFilter(), (), None, (Order("views", True),)),
    (KeyFilter(), ("url",), None, (Order("total", True), Order("low"))),
    (KeyFilter(equals={"referrer": frozenset({"g", "(none)"})}), ("url",), 2 * HOUR, ()),
    (KeyFilter(prefixes={"url": ("/a", "/c1")}), ("referrer", "url"), HOUR, (Order("top"),)),
    (KeyFilter(key_prefix="/b"), ("url", "referrer"), 3 * HOUR, (Order("bucket", True),)),
    (KeyFilter(), ("url", "referrer"), HOUR, (Order("low", True), Order("views"))),
]


@pytest.mark.parametrize("case", range(len(SELECTIONS)))
def test_every_page_equals_the_python_path(case: int) -> None:
    rng = random.Random(case)
    batch, realtime = _cells(rng, 120), _cells(rng, 40)
    keys, groups, width, order = SELECTIONS[case]
    selection = Selection(keys, groups, (HOUR, 7 * HOUR + 1), width, order)
    expected = rows(VIEW, [batch, realtime], selection)
    tables = realtime_table(VIEW, batch), realtime_table(VIEW, realtime)
    after, pages = None, 0
    while True:
        want = page(expected, selection.sort_key, selection.position, after, 7)
        got = select_page(VIEW, *tables, selection, after, 7)
        assert got == want
        pages += 1
        if got.after is None:
            break
        after = got.after
    assert pages == -(-len(expected) // 7) or (pages == 1 and not expected)


def test_no_batch_version_and_hll_views_are_not_pushed_down() -> None:
    realtime = {"/a\x1fg": {HOUR: {"views": 2, "total": 5, "low": 1, "top": 3}}}
    selection = Selection(KeyFilter(), ("url",), (0, 4 * HOUR), None, ())
    got = select_page(VIEW, None, realtime_table(VIEW, realtime), selection, None, 10)
    assert got.items == rows(VIEW, [realtime], selection)
    hll = ViewDef("v", "pageviews", ("url",), 3600, (Measure("u", "hll", "user_id"),))
    assert supported(VIEW) and not supported(hll)
