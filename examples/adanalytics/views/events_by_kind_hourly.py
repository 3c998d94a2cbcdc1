"""Events per type, ad type and render speed per hour: derived fields as keys."""

from views.definition import Derived, Measure, ViewDef

VIEW = ViewDef(
    name="events_by_kind_hourly",
    stream="ad_events",
    keys=("event_type", "ad_kind", "slow"),
    bucket_s=3600,
    measures=(
        Measure("events", "count"),
        Measure("visitors", "hll", "user_id"),
        Measure("latency_total", "sum", "latency_ms"),
    ),
    derive=(
        Derived("ad_kind", "if(ad_type == 'sponsored-search', 'search', lower(ad_type))"),
        Derived("slow", "latency_ms >= 250"),
    ),
    description="Events per event type, kind of ad and whether it rendered slowly (>= 250 ms), "
    "per hour; a missing latency keys as (none).",
)
