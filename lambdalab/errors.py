"""One exception root for lambda-lab, with a few meaningful subclasses.

Everything the platform raises on purpose derives from :class:`LambdaLabError`. Messages
name the identifiers involved (view, topic[partition], offset, path, port) so that an
operator can act on them without reading a stack trace. The serving layer maps the
classes to HTTP statuses in one place (``serving.app``): not found 404, rejected input
4xx, an unavailable backend 503.
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


class WaitTimeout(LambdaLabError):
    """A condition awaited with :func:`lambdalab.wait.wait_until` did not hold in time.

    Callers usually translate it into the error of their own layer (a service not healthy
    is a :class:`StackError`, a lock held elsewhere a :class:`BatchError`).

    Attributes:
        what: the condition that was awaited, as the message names it.
        timeout_s: how long it was awaited.
        last: the exception of the last check, or None when the last check ran and
            answered "not yet".
    """

    def __init__(self, what: str, timeout_s: float, last: BaseException | None) -> None:
        self.what = what
        self.timeout_s = timeout_s
        self.last = last
        super().__init__(f"{what}: not reached within {timeout_s:g} s ({self.last_check})")

    @property
    def last_check(self) -> str:
        """The last check's outcome on one line: ``not yet`` or ``Type: first line``."""
        if self.last is None:
            return "not yet"
        text = f"{type(self.last).__name__}: {self.last}".strip()
        return text.splitlines()[0][:200]


class PartUnavailable(ServiceUnavailable):
    """A part of a merged answer could not be read and the API is in consistent mode."""


class ValidationFailed(LambdaLabError):
    """An event or request failed validation; carries per-item reasons."""

    def __init__(self, message: str, reasons: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or []


class IngestRejected(LambdaLabError):
    """A body sent for ingest could not be read at all (not JSON, not NDJSON); says where."""


class NotFound(LambdaLabError):
    """A view, a version or a stream that does not exist; the message lists the known ones."""


class DefinitionError(LambdaLabError):
    """A stream or view declaration is invalid; names the declaration and the field."""


class SchemaRefused(DefinitionError):
    """A stream's declaration removes or retypes a field of its stored data."""


class BatchError(LambdaLabError):
    """A batch run (landing, build, publish) failed; nothing served has changed."""


class ClaimLost(BatchError):
    """Another lander committed a different range from the same first offset.

    This lander's view of the master dataset is stale; a new run resumes from the commits.
    """


class FencedOut(LambdaLabError):
    """Another consumer moved a partition's offsets: this one is a zombie for it and must stop.

    ``partition`` names the partition (None: several); ``lost`` is True when no other
    consumer took it but Redis lost its data or went back to an older state of it (its
    offsets gone, or behind what this consumer committed): then the partition must be
    claimed again (and rebuilt, or resumed from the older offset), rather than left to a
    consumer that took it.
    """

    def __init__(self, msg: str, *, partition: int | None = None, lost: bool = False) -> None:
        super().__init__(msg)
        self.partition = partition
        self.lost = lost
