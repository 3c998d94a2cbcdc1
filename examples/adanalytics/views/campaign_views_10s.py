"""YSB's query: views per campaign per 10-second window of event time."""

from views.definition import Enrich, Measure, ViewDef

VIEW = ViewDef(
    name="campaign_views_10s",
    stream="ad_events",
    keys=("campaign_id",),
    bucket_s=10,
    measures=(Measure("views", "count"),),
    enrich=(Enrich("campaigns", on="ad_id", fields=("campaign_id",)),),
    where="event_type == 'view'",
    description="Ad views per campaign per 10 s of event time (the Yahoo Streaming Benchmark).",
)
