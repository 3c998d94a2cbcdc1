"""Every example of docs/lab/transforms.md gives what the page says it gives.

The page's tables list ``expression`` and the value it gives on the page's sample event;
each row is parsed here and evaluated by the Python evaluator (Spark is held to the same
by tests/integration/test_expr_parity.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from views.expr import parse, to_python

PAGE = Path(__file__).resolve().parents[2] / "docs" / "lab" / "transforms.md"
TYPES = {
    "url": "string",
    "referrer": "string",
    "bytes": "int",
    "user_id": "string",
    "latency": "float",
    "event_time": "timestamp",
}
ROW = re.compile(r"^\| `(?P<expr>[^`]+)` \| `(?P<gives>[^`]*)` \|", re.MULTILINE)


def _sample() -> dict[str, Any]:
    text = PAGE.read_text()
    block = text.split("### The examples", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    return dict(json.loads(block))


def _value(text: str) -> Any:
    if text in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[text]
    if text.startswith("'"):
        return text[1:-1]
    return float(text) if "." in text else int(text)


EXAMPLES = [(m["expr"], m["gives"]) for m in ROW.finditer(PAGE.read_text())]


def test_the_page_has_examples_of_every_function() -> None:
    from views.functions import FUNCTIONS, OPERATORS

    shown = " ".join(expr for expr, _ in EXAMPLES)
    missing = [name for name in sorted(set(FUNCTIONS) - OPERATORS) if f"{name}(" not in shown]
    assert not missing and len(EXAMPLES) > 40


@pytest.mark.parametrize(("expr", "gives"), EXAMPLES)
def test_example(expr: str, gives: str) -> None:
    got = to_python(parse(expr, TYPES))(_sample())
    expected = _value(gives)
    assert got == expected and type(got) is type(expected)
