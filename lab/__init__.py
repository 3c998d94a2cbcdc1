"""The lab: the two-codebase pair and its drift check, the Kappa replay, the demo."""

from lambdalab.exports import lazy

__all__, __getattr__ = lazy(
    __name__,
    {
        "check": "lab.drift",
        "DriftReport": "lab.drift",
        "replay": "lab.kappa",
        "compare": "lab.kappa",
        "KappaReport": "lab.kappa",
    },
)
