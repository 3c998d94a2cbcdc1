"""The serving layer: merged answers (batch @ cut ⊕ realtime), SQL, metrics, dashboard."""

from lambdalab.exports import lazy

__all__, __getattr__ = lazy(
    __name__,
    {
        "create_app": "serving.app",
        "merged_query": "serving.query",
        "answer": "serving.merge",
    },
)
