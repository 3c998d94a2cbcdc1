"""Unique visitors per URL per hour: an approximate distinct count (HLL sketch)."""

from views.definition import Measure, ViewDef

VIEW = ViewDef(
    name="visitors_by_url_hourly",
    stream="pageviews",
    keys=("url",),
    bucket_s=3600,
    measures=(Measure("unique_visitors", "hll", "user_id"),),
    description="Distinct user_id per URL per hour of event time (DataSketches HLL, lg_k=12).",
)
