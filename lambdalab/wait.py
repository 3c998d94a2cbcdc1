"""Waiting for a service or a condition outside this process: one way, for every layer.

Every layer of the Lambda architecture waits on something it does not control: the stack
on a service's health check, the archiver on a lock or on another lander's claim in HDFS,
the kernel on fresh Kafka metadata, the lab on the API. :func:`wait_until` is the single
deadline loop they share, built on tenacity: it polls at a fixed interval, never starts a
check after the timeout, and on timeout raises :class:`~lambdalab.errors.WaitTimeout`
naming what was awaited and the last failure (or re-raises that failure, if asked).

Loops that are not "wait for a condition" (consume until offsets are reached, sleep
between runs until a signal, pace a generator) keep their own shape: they do work on each
turn, and their end is not a deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    retry_if_result,
    stop_before_delay,
    wait_fixed,
)

from lambdalab.errors import WaitTimeout

T = TypeVar("T")
NO_EXCEPTIONS: tuple[type[BaseException], ...] = ()


def wait_until(
    check: Callable[[], T],
    *,
    timeout_s: float,
    interval_s: float,
    what: str,
    retry_on: tuple[type[BaseException], ...] = NO_EXCEPTIONS,
    abort_on: tuple[type[BaseException], ...] = NO_EXCEPTIONS,
    reraise: bool = False,
) -> T:
    """Call ``check`` every ``interval_s`` until it returns a truthy value; return that value.

    ``check`` runs at least once, even with ``timeout_s`` 0, and never starts after
    ``timeout_s`` has passed. A falsy result (None, False, empty) means "not yet".

    Args:
        check: one look at the condition; blocking calls inside it (a Kafka poll) count
            towards the timeout.
        timeout_s: how long to keep looking, from the first call.
        interval_s: the pause between two calls.
        what: the condition in words ("partitions of topic t"), for the timeout message.
        retry_on: exceptions of ``check`` that also mean "not yet"; any other propagates
            at once.
        abort_on: exceptions that propagate at once even if ``retry_on`` covers them
            (a health check retries on any error, but not on "the process exited").
        reraise: on timeout, raise the last exception of ``check`` itself instead of
            :class:`WaitTimeout` (when the last call raised one).

    Returns:
        The first truthy result of ``check``.

    Raises:
        WaitTimeout: the condition did not hold within ``timeout_s``.
    """
    retrying = Retrying(
        stop=stop_before_delay(timeout_s),
        wait=wait_fixed(interval_s),
        retry=(
            retry_if_result(lambda result: not result)
            | (retry_if_exception_type(retry_on) & retry_if_not_exception_type(abort_on))
        ),
    )
    try:
        return retrying(check)
    except RetryError as exc:
        last = exc.last_attempt.exception() if exc.last_attempt.failed else None
        if reraise and last is not None:
            raise last from None
        raise WaitTimeout(what, timeout_s, last) from last
