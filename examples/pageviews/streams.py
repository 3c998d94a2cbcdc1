"""The example project's one stream: page views of a web site."""

from lambdalab.schema import Field, Stream

PAGE_VIEWS = Stream(
    name="pageviews",
    fields=(
        Field("event_id", "string"),
        Field("url", "string"),
        Field("user_id", "string"),
        Field("referrer", "string", required=False),
        Field("bytes", "int"),
        Field("event_time", "timestamp"),
    ),
)

STREAMS = [PAGE_VIEWS]
