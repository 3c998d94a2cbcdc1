"""The kernel: settings, stream schemas, errors, paths, topics, the time boundary, dead letters.

Also the one way to wait on a service or a condition (:func:`lambdalab.wait.wait_until`).
"""

from lambdalab.exports import lazy

__all__, __getattr__ = lazy(
    __name__,
    {
        "Settings": "lambdalab.settings",
        "get_settings": "lambdalab.settings",
        "load_settings": "lambdalab.settings",
        "Stream": "lambdalab.schema",
        "Field": "lambdalab.schema",
        "STREAMS": "lambdalab.schema",
        "get_stream": "lambdalab.schema",
        "LambdaLabError": "lambdalab.errors",
        "DeadLetters": "lambdalab.deadletters",
        "split": "lambdalab.deadletters",
        "window_of": "lambdalab.boundary",
        "cut_at": "lambdalab.boundary",
    },
)
