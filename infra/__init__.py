"""The local stack: JVM artifacts, service configs, supervision and health checks."""

from lambdalab.exports import lazy

__all__, __getattr__ = lazy(
    __name__,
    {
        "Stack": "infra.stack",
        "fetch": "infra.artifacts",
        "Dist": "infra.artifacts",
        "CHECKS": "infra.health",
    },
)
