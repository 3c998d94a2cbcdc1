"""The speed layer: Kafka to incremental realtime views in Redis, effectively once."""

from lambdalab.exports import lazy

__all__, __getattr__ = lazy(
    __name__,
    {
        "SpeedConsumer": "speed.consumer",
        "catch_up": "speed.consumer",
        "SpeedReader": "speed.reader",
        "RealtimeStore": "speed.store",
    },
)
