"""One exception root for lambda-lab, with a few meaningful subclasses.

Messages name the identifiers involved (view, topic[partition], offset, path, port) so
that an operator can act on them without reading a stack trace.
"""

from __future__ import annotations


class LambdaLabError(Exception):
    """Root of every error the platform raises on purpose."""


class ConfigError(LambdaLabError):
    """Settings are invalid or an environment prerequisite (Java, a port) is missing."""


class StackError(LambdaLabError):
    """A service of the local stack could not be fetched, started or checked."""


class ServiceUnavailable(LambdaLabError):
    """A backend (Kafka, HDFS, Redis, Trino) did not answer; says which and what to start."""


class ValidationFailed(LambdaLabError):
    """An event or request failed validation; carries per-item reasons."""

    def __init__(self, message: str, reasons: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or []


class ViewError(LambdaLabError):
    """A view definition is invalid or a view / version does not exist."""


class BatchError(LambdaLabError):
    """A batch run (landing, build, publish) failed; nothing served has changed."""
