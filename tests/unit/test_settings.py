from __future__ import annotations

import pytest

from levered.errors import ConfigurationError
from levered.settings import Settings, load_settings


def test_defaults_without_environment() -> None:
    assert load_settings({}) == Settings()
    assert Settings().port == 8000 and Settings().database_url is None


def test_reads_prefixed_variables_and_converts_types() -> None:
    settings = load_settings(
        {
            "LEVERED_PORT": "9001",
            "LEVERED_WORKERS": "3",
            "LEVERED_DATABASE_URL": "postgresql://x/y",
            "OTHER": "1",
        }
    )
    assert (settings.port, settings.workers, settings.database_url) == (9001, 3, "postgresql://x/y")


def test_bad_value_names_the_environment_variable() -> None:
    with pytest.raises(ConfigurationError, match="LEVERED_PORT"):
        load_settings({"LEVERED_PORT": "eighty"})
    with pytest.raises(ConfigurationError, match="LEVERED_WORKERS"):
        load_settings({"LEVERED_WORKERS": "0"})


def test_overrides_win_over_environment_and_none_is_ignored() -> None:
    settings = load_settings({"LEVERED_PORT": "9001"}, port=7000, host=None)
    assert settings.port == 7000 and settings.host == "127.0.0.1"
