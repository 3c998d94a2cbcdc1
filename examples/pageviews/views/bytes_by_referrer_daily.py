"""Bytes served per referrer per day."""

from views.definition import Measure, ViewDef

VIEW = ViewDef(
    name="bytes_by_referrer_daily",
    stream="pageviews",
    keys=("referrer",),
    bucket_s=86400,
    measures=(Measure("bytes", "sum", "bytes"), Measure("views", "count")),
    description="Total bytes and views per referrer per day of event time.",
)
