"""Config: defaults, environment fallbacks, files, and errors that say how to fix them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aioposthog import AsyncPostHog, ConfigError, PostHogConfig, RetryPolicy, load_config

KEY = "phc_testkey123"


def test_defaults() -> None:
    cfg = PostHogConfig(api_key=KEY)
    assert cfg.host == "https://us.i.posthog.com"
    assert cfg.overflow == "drop_newest"
    assert cfg.compression == "gzip"
    assert cfg.capture_mode == "v0"
    assert cfg.retry_policy == RetryPolicy(max_attempts=cfg.max_retries + 1)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://app.posthog.com", "https://us.i.posthog.com"),
        ("https://us.posthog.com/", "https://us.i.posthog.com"),
        ("https://eu.posthog.com", "https://eu.i.posthog.com"),
        ("https://eu.i.posthog.com///", "https://eu.i.posthog.com"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("https://posthog.example.com/prefix/", "https://posthog.example.com/prefix"),
    ],
)
def test_host_normalisation(given: str, expected: str) -> None:
    assert PostHogConfig(api_key=KEY, host=given).host == expected


def test_api_host_keeps_the_app_host_for_rest() -> None:
    assert PostHogConfig(api_key=KEY, host="https://us.posthog.com").api_host == (
        "https://us.posthog.com"
    )
    assert PostHogConfig(api_key=KEY, host="http://127.0.0.1:9").api_host == "http://127.0.0.1:9"


@pytest.mark.parametrize("host", ["us.i.posthog.com", "ftp://x.example.com", "https://"])
def test_bad_host_names_the_setting(host: str) -> None:
    with pytest.raises(ConfigError) as info:
        PostHogConfig(api_key=KEY, host=host)
    assert info.value.setting == "host"
    assert "host" in str(info.value) and "POSTHOG_HOST" in str(info.value)


def test_missing_key_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="POSTHOG_API_KEY"):
        PostHogConfig()


def test_disabled_needs_no_key() -> None:
    assert PostHogConfig(disabled=True).disabled


def test_personal_key_as_api_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        PostHogConfig(api_key="phx_supersecretvalue")
    assert "personal_api_key" in str(info.value)
    assert "supersecretvalue" not in str(info.value)


def test_contradiction_flush_at_over_queue() -> None:
    with pytest.raises(ConfigError, match="flush_at"):
        PostHogConfig(api_key=KEY, flush_at=500, max_queue_size=100)


def test_unknown_option() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'flsh_at'"):
        AsyncPostHog(KEY, flsh_at=3)


def test_bad_value_names_setting_and_env_var() -> None:
    with pytest.raises(ConfigError) as info:
        PostHogConfig(api_key=KEY, flush_at=0)
    assert info.value.setting == "flush_at"
    assert "POSTHOG_FLUSH_AT" in str(info.value)


def test_overflow_must_be_known() -> None:
    with pytest.raises(ConfigError, match="overflow"):
        PostHogConfig(api_key=KEY, overflow="drop_everything")


def test_environment_fallback_and_explicit_wins() -> None:
    env = {
        "POSTHOG_API_KEY": KEY,
        "POSTHOG_HOST": "http://127.0.0.1:1234",
        "POSTHOG_FLUSH_AT": "25",
        "POSTHOG_COMPRESSION": "none",
        "POSTHOG_DISABLE_GEOIP": "false",
        "POSTHOG_SUPER_PROPERTIES": '{"service": "api"}',
    }
    cfg = PostHogConfig.from_env(env, flush_at=30)
    assert cfg.flush_at == 30
    assert cfg.host == "http://127.0.0.1:1234"
    assert cfg.compression == "none"
    assert cfg.disable_geoip is False
    assert cfg.super_properties == {"service": "api"}


def test_environment_values_are_validated() -> None:
    with pytest.raises(ConfigError, match="POSTHOG_FLUSH_AT"):
        PostHogConfig.from_env({"POSTHOG_API_KEY": KEY, "POSTHOG_FLUSH_AT": "lots"})
    with pytest.raises(ConfigError, match="JSON object"):
        PostHogConfig.from_env({"POSTHOG_API_KEY": KEY, "POSTHOG_SUPER_PROPERTIES": "{"})


def test_client_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTHOG_API_KEY", KEY)
    monkeypatch.setenv("POSTHOG_MAX_CONCURRENT_REQUESTS", "2")
    client = AsyncPostHog()
    assert client.config.max_concurrent_requests == 2
    assert client.config.api_key == KEY


def test_secrets_stay_out_of_repr() -> None:
    cfg = PostHogConfig(api_key=KEY, personal_api_key="phx_personalsecret")
    assert KEY not in repr(cfg)
    assert "phx_personalsecret" not in repr(cfg)
    assert KEY not in repr(AsyncPostHog(config=cfg))


def test_load_config_file_env_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "posthog.staging.json").write_text(
        json.dumps({"api_key": KEY, "flush_at": 20, "flush_interval": 3.0})
    )
    env = {"POSTHOG_FLUSH_INTERVAL": "0.25"}
    cfg = load_config("staging", directory=tmp_path, environ=env, max_retries=1)
    assert cfg.flush_at == 20
    assert cfg.flush_interval == 0.25  # environment over the file
    assert cfg.max_retries == 1  # explicit over both


def test_load_config_environment_from_posthog_env(tmp_path: Path) -> None:
    (tmp_path / "posthog.production.json").write_text(json.dumps({"api_key": KEY, "flush_at": 7}))
    env = {"POSTHOG_ENV": "production", "POSTHOG_CONFIG_DIR": str(tmp_path)}
    assert load_config(environ=env).flush_at == 7


def test_load_config_missing_named_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"posthog\.nowhere\.json"):
        load_config("nowhere", directory=tmp_path, environ={})


def test_load_config_malformed_file(tmp_path: Path) -> None:
    (tmp_path / "posthog.development.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config("development", directory=tmp_path, environ={})


@pytest.mark.parametrize("name", ["development", "staging", "production"])
def test_shipped_example_configs_load(name: str) -> None:
    folder = Path(__file__).parents[2] / "examples" / "config"
    cfg = load_config(name, directory=folder, environ={"POSTHOG_API_KEY": KEY})
    assert cfg.api_key == KEY


def test_retry_policy_delays_are_capped_full_jitter() -> None:
    policy = RetryPolicy(max_attempts=8, base=1.0, cap=5.0)
    delays = list(policy.delays())
    assert len(delays) == 7
    assert all(0 <= d <= 5.0 for d in delays)
    exact = list(RetryPolicy(max_attempts=5, base=0.5, cap=3.0, jitter=False).delays())
    assert exact == [0.5, 1.0, 2.0, 3.0]


def test_retry_after_is_a_floor_with_a_cap() -> None:
    policy = RetryPolicy(max_retry_after=10.0)
    assert policy.wait_for(0.1, 3.0) == 3.0
    assert policy.wait_for(4.0, 3.0) == 4.0
    assert policy.wait_for(0.1, 600.0) == 10.0
    assert policy.wait_for(0.2, None) == 0.2


def test_retry_policy_validation() -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(max_attempts=0)
    assert RetryPolicy(base=0.0) == RetryPolicy(base=0.0)  # comparable value


def test_block_overflow_gets_a_small_queue_unless_told() -> None:
    assert PostHogConfig(api_key=KEY, overflow="block").max_queue_size == 10_000
    assert PostHogConfig(api_key=KEY, overflow="block", max_queue_size=50_000).max_queue_size == (
        50_000
    )
    assert PostHogConfig(api_key=KEY).max_queue_size == 100_000


def test_block_overflow_gets_large_batches_unless_told() -> None:
    assert PostHogConfig(api_key=KEY, overflow="block").flush_at == 5_000
    assert PostHogConfig(api_key=KEY, overflow="block", flush_at=200).flush_at == 200
    # never larger than the queue, which would be a contradiction (a ConfigError)
    assert PostHogConfig(api_key=KEY, overflow="block", max_queue_size=3_000).flush_at == 3_000
    assert PostHogConfig(api_key=KEY).flush_at == 1_000
    assert PostHogConfig(api_key=KEY, overflow="drop_oldest").flush_at == 1_000


def test_unserialisable_super_properties_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="super_properties") as info:
        AsyncPostHog(KEY, super_properties={"service": object()})
    assert info.value.setting == "super_properties"
