"""schemathesis against the real stack: the OpenAPI document and the API agree.

The schema is loaded from the app itself (``create_app(settings)`` over ASGI, in process,
in the test's own namespace on the real stack) with the write key (also a read key) for
its ``X-API-Key`` scheme. Every operation is exercised in every phase (examples,
coverage, fuzzing, and stateful sequences along the links schemathesis infers), with
positive and negative data, under every check schemathesis has (14 in 4.32) plus a
response-time limit. None is disabled; what each exception below means:

- 413 counts as a rejection of negative data (it answers documented size limits);
- ``POST /sql`` and ``POST /sql/merged`` may refuse schema-valid SQL with 400: SQL's
  grammar is no JSON Schema;
- a positive view query keeps ``to`` after ``from`` (:func:`map_case`);
- three checks run but find nothing to act on here: ``object_level_authorization``
  needs objects owned by one identity (keys are scopes over shared data), and
  ``use_after_free`` and ``ensure_resource_availability`` need a created resource that
  a link reads back or deletes (events are appended to a log, never addressed).

Short by default; ``LAMBDALAB_SCHEMATHESIS_EXAMPLES=N`` sets the examples per operation
(and the stateful runs) for a long run::

    LAMBDALAB_SCHEMATHESIS_EXAMPLES=1000 .venv/bin/pytest tests/integration/test_openapi.py
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import HTTPException
from schemathesis.python.asgi import shutdown_lifespans

from lambdalab.schema import MAX_STRING, TS_MAX, format_ts
from lambdalab.settings import Settings
from serving.app import create_app
from serving.routes.rows import key_span
from serving.routes.views import EPOCH, MAX_BUCKETS, bucket_span
from views.definition import ViewDef
from views.registry import all_views

EXAMPLES = int(os.environ.get("LAMBDALAB_SCHEMATHESIS_EXAMPLES", "20"))
# Answered 2xx at least once by every operation a test calls (the key is sent and works),
# but these, with the reason
NEVER_2XX = {"GET /views/{view}/lineage": "a fresh namespace has no published batch version"}
RUN: Counter[str] = Counter()  # cases per operation, for the report
ANSWERED: dict[str, Counter[int]] = defaultdict(Counter)  # statuses per operation


DEFAULTS = schemathesis.Config.from_dict({}).projects.default.checks
REJECTED = DEFAULTS.negative_data_rejection.expected_statuses  # what a refusal may answer
ACCEPTED = DEFAULTS.positive_data_acceptance.expected_statuses  # what valid data may answer
# A small api.max_events_per_request (the documented maxItems) keeps the coverage phase's
# longest arrays cheap, and keeps every schema-valid body under api.max_body_bytes: at most
# 20 events of 6 fields, each string at most 2048 characters of at most 12 bytes of JSON.
MAX_EVENTS = 20
CONFIG = {
    # the write key, also a read key, for the document's security scheme (X-API-Key)
    "auth": {"openapi": {"APIKeyHeader": {"api_key": "dev-write-key"}}},
    "generation": {"max-examples": EXAMPLES},
    "checks": {
        "enabled": True,  # every check schemathesis has (14 in 4.32), and a response time:
        # longer than every wait of the API (Kafka acks 30 s, api.sql_timeout_s 30 s) is a hang
        "max_response_time": 60,
        # Documented limits (maxItems) are enforced with 413 Content Too Large: a rejection.
        "negative_data_rejection": {"expected-statuses": [*REJECTED, "413"]},
    },
    "operations": [
        {
            # `sql` is any string to JSON Schema; that it is one read-only statement Trino
            # can run is SQL's grammar, which no schema expresses: a refusal is 400 naming
            # why (tests/integration/test_sql_readonly.py pins which statements pass).
            "include-name": "POST /sql",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}},
        },
        {
            # the same for DuckDB's grammar (tests/integration/test_sql_merged.py)
            "include-name": "POST /sql/merged",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}},
        },
    ],
}


def _limited(settings: Settings) -> Settings:
    api = settings.api.model_copy(update={"max_events_per_request": MAX_EVENTS})
    assert api.max_body_bytes > MAX_EVENTS * 6 * (MAX_STRING * 12 + 100)
    return settings.model_copy(update={"api": api})


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """One JSON value per line; anything but an array is a sequence of one value."""
    values = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(v).encode() + b"\n" for v in values)


@pytest.fixture
def api_schema(
    stack: Settings,
    settings: Settings,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    # schemathesis 4.32 relabels the pytest item through `_nodeid`, which pytest 9.2 renamed
    request.node._nodeid = request.node.nodeid
    config = schemathesis.Config.from_dict(CONFIG)
    app = create_app(_limited(settings))
    started = time.perf_counter()
    RUN.clear()
    ANSWERED.clear()
    request.addfinalizer(lambda: _report(request.node.name, capsys, started))
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    loaded.hook(map_case)
    return loaded


def map_case(context: schemathesis.HookContext, case: Any) -> Any:
    """A positive query of a view keeps ``to`` after ``from`` and within MAX_BUCKETS buckets.

    The one rule between two parameters, which OpenAPI cannot state (the operation's
    description does). A positive case that breaks it keeps its ``from`` and gets a ``to``
    as many buckets later as it asked for, between 1 and MAX_BUCKETS. A ``cursor`` is
    opaque, valid only as the API issued it (``next_cursor``): a positive case drops a
    generated one. Every other case is sent as generated, negative ones included.
    """
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    view = _view_of(case) if positive else None
    if view is None:
        return case
    if case.query and "cursor" in case.query:
        del case.query["cursor"]
    start, end = (case.query or {}).get("from"), (case.query or {}).get("to")
    try:
        if case.operation.label.endswith("/keys"):
            key_span(view, start, end)
        else:
            bucket_span(view, start, end)
        return case
    except HTTPException:  # `to` before `from` or too far after it (`from` alone: before now)
        pass
    width = view.bucket_s * 1000
    lo = view.bucket_of(_ms(start))
    asked = (_ms(end) - lo) // width if end is not None else 1
    hi = min(lo + min(max(asked, 1), MAX_BUCKETS) * width, _ms(format_ts(TS_MAX)))
    case.query["to"] = format_ts(EPOCH + timedelta(milliseconds=hi))
    return case


def _view_of(case: Any) -> ViewDef | None:
    """The view a ranged query reads (the point query's path parameter, or a view's own
    ``/rows`` or ``/keys`` path); None for every other operation."""
    label = case.operation.label
    if label == "GET /views/{view}":
        return all_views().get(case.path_parameters["view"])
    parts = label.split("/")
    if len(parts) == 4 and parts[3] in ("rows", "keys"):
        return all_views().get(parts[2])
    return None


def _ms(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _report(test: str, capsys: pytest.CaptureFixture[str], started: float) -> None:
    shutdown_lifespans()  # schemathesis started the app's lifespan: close its producers
    per_operation = ", ".join(f"{op} {n}" for op, n in sorted(RUN.items()))
    with capsys.disabled():
        print(
            f"\n{test}: {sum(RUN.values())} schemathesis cases in "
            f"{time.perf_counter() - started:.1f}s ({EXAMPLES} examples): {per_operation}"
        )
    refused = [op for op, codes in ANSWERED.items() if not any(200 <= c < 300 for c in codes)]
    if set(refused) - set(NEVER_2XX):
        pytest.fail(f"never answered 2xx: {sorted(refused)} ({dict(ANSWERED)})")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_the_api_answers_as_its_openapi_document_says(case: Any) -> None:
    RUN[case.operation.label] += 1
    ANSWERED[case.operation.label][case.call_and_validate().status_code] += 1


def test_sequences_of_calls_answer_as_their_links_say(api_schema: Any) -> None:
    """The stateful phase: calls chained by the links schemathesis infers from the document.

    (A view's name from ``GET /views`` into ``GET /views/{view}`` and its lineage, one
    ingest route's accepted body into the other's.) Every check runs on every step.
    """

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)  # records it for the stateful checks
            RUN[case.operation.label] += 1
            ANSWERED[case.operation.label][response.status_code] += 1

    steps = hypothesis.settings(max_examples=EXAMPLES, deadline=None, stateful_step_count=10)
    Workflow.run(settings=steps)
