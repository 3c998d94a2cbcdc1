"""Page views per URL per hour, with the smallest and largest response sizes."""

from views.definition import Measure, ViewDef

VIEW = ViewDef(
    name="pageviews_by_url_hourly",
    stream="pageviews",
    keys=("url",),
    bucket_s=3600,
    measures=(
        Measure("views", "count"),
        Measure("min_bytes", "min", "bytes"),
        Measure("max_bytes", "max", "bytes"),
    ),
    description="How many times each URL was viewed per hour of event time.",
)
