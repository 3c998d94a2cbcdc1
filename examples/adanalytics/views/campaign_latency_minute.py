"""How fast each campaign's ads render, per minute: quantiles, average, worst, reach."""

from views.definition import Enrich, Measure, ViewDef

VIEW = ViewDef(
    name="campaign_latency_minute",
    stream="ad_events",
    keys=("campaign_id",),
    bucket_s=60,
    measures=(
        Measure("events", "count"),
        Measure("latency", "quantiles", "latency_ms", quantiles=(0.5, 0.95, 0.99)),
        Measure("latency_avg", "avg", "latency_ms"),
        Measure("latency_max", "max", "latency_ms"),
        Measure("users", "theta", "user_id"),
    ),
    enrich=(Enrich("campaigns", on="ad_id", fields=("campaign_id",)),),
    where="not bot",
    description="Render latency (KLL quantiles, average, max) and distinct users (theta) "
    "per campaign per minute of event time, bots left out.",
)
