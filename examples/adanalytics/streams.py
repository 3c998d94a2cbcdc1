"""The ad-analytics project's stream: ad events in the shape of the Yahoo Streaming Benchmark.

YSB's generator writes ``user_id, page_id, ad_id, ad_type, event_type, event_time,
ip_address`` with the event time in epoch milliseconds; this stream takes them as they come
(``time_format="epoch_ms"``) plus an id for each event, how long the ad took to render
(a float) and whether the visitor is a known bot (a boolean).
"""

from lambdalab.schema import Field, Stream

AD_EVENTS = Stream(
    name="ad_events",
    fields=(
        Field("event_id", "string"),
        Field("user_id", "string"),
        Field("page_id", "string"),
        Field("ad_id", "string"),
        Field("ad_type", "string"),  # banner, modal, sponsored-search, mail, mobile
        Field("event_type", "string"),  # view, click, purchase
        Field("event_time", "timestamp", time_format="epoch_ms"),
        Field("ip_address", "string"),
        Field("latency_ms", "float", required=False),
        Field("bot", "bool"),
    ),
)

STREAMS = [AD_EVENTS]
