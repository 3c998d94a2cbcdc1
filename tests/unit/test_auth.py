"""API keys: explicit scopes, and the development keys only in demo mode (no services)."""

from __future__ import annotations

import pytest

from lambdalab.errors import ConfigError
from lambdalab.settings import load_settings
from serving.app import create_app
from serving.auth import check_keys, scopes_of

pytestmark = pytest.mark.unit


def test_the_api_refuses_to_start_with_the_development_keys_outside_demo_mode() -> None:
    settings = load_settings(demo=False)
    with pytest.raises(ConfigError, match="LAMBDALAB_API__WRITE_KEYS") as caught:
        create_app(settings)
    assert "dev-read-key" in str(caught.value) and "LAMBDALAB_DEMO" in str(caught.value)


def test_own_keys_start_without_demo_mode() -> None:
    settings = load_settings(demo=False, api={"write_keys": ["w1"], "read_keys": ["r1"]})
    check_keys(settings)
    create_app(settings)


def test_scopes_are_explicit() -> None:
    api = {"write_keys": ["w", "both"], "read_keys": ["r", "both"]}
    settings = load_settings(demo=False, api=api)
    assert scopes_of(settings, "w") == {"write"}  # a write key alone does not read
    assert scopes_of(settings, "r") == {"read"}
    assert scopes_of(settings, "both") == {"read", "write"}
    assert scopes_of(settings, "nope") == set() and scopes_of(settings, None) == set()
