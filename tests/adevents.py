"""Ad events in the Yahoo Streaming Benchmark's shape, and a plain-Python oracle of the
ad-analytics example project's views (examples/adanalytics).

The oracle applies the views' filters, lookups and derived fields itself, written out
here: it never calls ``views.expr``, ``views.transform``, ``views.measures`` or any layer.
"""

from __future__ import annotations

import csv
import math
import random
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "examples" / "adanalytics"
CAMPAIGNS_CSV = PROJECT / "data" / "campaigns.csv"
AD_TYPES = ("banner", "modal", "sponsored-search", "mail", "mobile")
EVENT_TYPES = ("view", "click", "purchase")
SEP = "\x1f"


def campaigns(path: Path = CAMPAIGNS_CSV) -> dict[str, str]:
    """ad_id -> campaign_id of a campaigns file."""
    with path.open(newline="") as fh:
        return {row["ad_id"]: row["campaign_id"] for row in csv.DictReader(fh)}


def ad_events(n: int, now_ms: int, ads: list[str], seed: int = 7) -> list[dict[str, Any]]:
    """``n`` YSB-like events around ``now_ms``: epoch-ms times (some minutes late), a few
    ads no campaign knows, latencies with gaps, bots."""
    rng = random.Random(seed)
    unknown = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(3)]
    out = []
    for i in range(n):
        late = rng.random() < 0.1
        t = now_ms - rng.randint(0, 50_000) - (rng.randint(60_000, 900_000) if late else 0)
        latency = None if rng.random() < 0.05 else round(rng.lognormvariate(4.5, 0.6), 3)
        out.append(
            {
                "event_id": f"ad{seed}-{i}",
                "user_id": f"u{rng.randint(0, 300)}",
                "page_id": f"p{rng.randint(0, 50)}",
                "ad_id": rng.choice(unknown) if rng.random() < 0.03 else rng.choice(ads),
                "ad_type": rng.choice(AD_TYPES),
                "event_type": rng.choices(EVENT_TYPES, weights=(6, 3, 1))[0],
                "event_time": t,
                "ip_address": f"10.0.{rng.randint(0, 255)}.{rng.randint(0, 255)}",
                "latency_ms": latency,
                "bot": rng.random() < 0.1,
            }
        )
    return out


def _key(*parts: Any) -> str:
    def text(v: Any) -> str:
        if v is None:
            return "(none)"
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    return SEP.join(text(p) for p in parts)


def campaign_views_10s(
    events: list[dict[str, Any]], camp: dict[str, str]
) -> dict[tuple[str, int], dict[str, Any]]:
    """(campaign key, 10 s bucket) -> {"views": n}."""
    out: dict[tuple[str, int], dict[str, Any]] = defaultdict(lambda: {"views": 0})
    for e in events:
        if e["event_type"] != "view":
            continue
        out[(_key(camp.get(e["ad_id"])), e["event_time"] - e["event_time"] % 10_000)]["views"] += 1
    return dict(out)


def exact_quantile(values: list[float], q: float) -> float:
    """The inclusive q-quantile of ``values`` (the smallest v with rank(v)/n >= q)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def campaign_latency_minute(
    events: list[dict[str, Any]], camp: dict[str, str]
) -> dict[tuple[str, int], dict[str, Any]]:
    """(campaign key, minute) -> events, latencies (list), users (set), for non-bot events."""
    out: dict[tuple[str, int], dict[str, Any]] = defaultdict(
        lambda: {"events": 0, "latencies": [], "users": set()}
    )
    for e in events:
        if e["bot"]:
            continue
        cell = out[(_key(camp.get(e["ad_id"])), e["event_time"] - e["event_time"] % 60_000)]
        cell["events"] += 1
        cell["users"].add(e["user_id"])
        if e["latency_ms"] is not None:
            cell["latencies"].append(float(e["latency_ms"]))
    return dict(out)


def events_by_kind_hourly(events: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(event_type/ad_kind/slow key, hour) -> events, users (set), latency values (list)."""
    out: dict[tuple[str, int], dict[str, Any]] = defaultdict(
        lambda: {"events": 0, "users": set(), "latencies": []}
    )
    for e in events:
        kind = "search" if e["ad_type"] == "sponsored-search" else e["ad_type"].lower()
        lat = e["latency_ms"]
        slow = None if lat is None else lat >= 250
        cell = out[
            (_key(e["event_type"], kind, slow), e["event_time"] - e["event_time"] % 3_600_000)
        ]
        cell["events"] += 1
        cell["users"].add(e["user_id"])
        if lat is not None:
            cell["latencies"].append(float(lat))
    return dict(out)
