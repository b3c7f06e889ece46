"""Settings come from the environment, and a bad value is named in one line."""

import re
from dataclasses import fields

import pytest

from app.settings import SETTINGS, VARIABLES, Settings, SettingsError, docs_table, load_settings
from tests.helpers import MODEL, ROOT, settings_read

pytestmark = pytest.mark.unit


def load(**env: str):
    return load_settings({"MODEL_PATH": str(MODEL), **env})


def test_defaults() -> None:
    settings = load()
    assert (settings.host, settings.port, settings.top_k) == ("127.0.0.1", 8000, 5)
    assert settings.max_upload_bytes == 10 * 2**20
    assert settings.cors_origins == ()
    assert settings.allow_private_urls is False
    assert settings.web_concurrency == 1 and settings.log_level == "info"
    assert settings.model_cache_dir.name == "pounce"


def test_model_cache_dir_follows_xdg_cache_home() -> None:
    settings = load(XDG_CACHE_HOME="/var/cache/me")
    assert str(settings.model_cache_dir) == "/var/cache/me/pounce"
    assert str(load(MODEL_CACHE_DIR="/srv/models").model_cache_dir) == "/srv/models"


def test_values_are_read_and_cast() -> None:
    settings = load(
        PORT="5000",
        TOP_K="3",
        MAX_UPLOAD_MB="2.5",
        CORS_ORIGINS="https://a.example, https://b.example",
        ALLOW_PRIVATE_URLS="yes",
        LOG_LEVEL="DEBUG",
        TITLE="Cougar or not?",
        FORWARDED_ALLOW_IPS="10.0.0.0/8, 192.168.1.7,::1",
    )
    assert settings.port == 5000 and settings.top_k == 3
    assert settings.max_upload_bytes == int(2.5 * 2**20)
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.allow_private_urls is True and settings.log_level == "debug"
    assert settings.title == "Cougar or not?"
    assert settings.forwarded_allow_ips == ("10.0.0.0/8", "192.168.1.7", "::1")
    assert load(FORWARDED_ALLOW_IPS="*").forwarded_allow_ips == ("*",)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "0"}, "PORT='0' is not valid: expected an integer between 1 and 65535"),
        ({"PORT": "http"}, "PORT='http' is not valid: expected an integer between 1 and 65535"),
        ({"TOP_K": "0"}, "TOP_K='0' is not valid: expected an integer >= 1"),
        (
            {"MAX_UPLOAD_MB": "lots"},
            "MAX_UPLOAD_MB='lots' is not valid: expected a number >= 0.001",
        ),
        ({"MAX_UPLOAD_MB": "inf"}, "MAX_UPLOAD_MB='inf' is not valid: expected a number >= 0.001"),
        ({"MAX_UPLOAD_MB": "nan"}, "MAX_UPLOAD_MB='nan' is not valid: expected a number >= 0.001"),
        ({"QUEUE_TIMEOUT": "nan"}, "QUEUE_TIMEOUT='nan' is not valid: expected a number between"),
        ({"TOP_K": "²"}, "TOP_K='²' is not valid: expected an integer >= 1"),
        ({"MAX_UPLOAD_MB": "1" + "0" * 400}, "MAX_UPLOAD_MB='1000"),
        ({"MAX_IN_FLIGHT": "1" + "0" * 400}, "MAX_IN_FLIGHT='1000"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud' is not valid: expected one of critical, error"),
        ({"ALLOW_PRIVATE_URLS": "maybe"}, "ALLOW_PRIVATE_URLS='maybe' is not valid: expected true"),
        ({"WEB_CONCURRENCY": "-2"}, "WEB_CONCURRENCY='-2' is not valid"),
        ({"INTRA_OP_THREADS": "0"}, "INTRA_OP_THREADS='0' is not valid: expected an integer"),
        ({"MEMORY_ARENA": "sometimes"}, "MEMORY_ARENA='sometimes' is not valid: expected true"),
        ({"MODEL_PATH": "/no/such/export.pkl"}, "MODEL_PATH='/no/such/export.pkl' is not valid"),
        (
            {"FORWARDED_ALLOW_IPS": "10.0.0.1/8"},  # uvicorn would trust nobody, silently
            "FORWARDED_ALLOW_IPS='10.0.0.1/8' is not valid: expected * or comma-separated IP",
        ),
        ({"FORWARDED_ALLOW_IPS": "router.heroku"}, "FORWARDED_ALLOW_IPS='router.heroku' is not"),
    ],
)
def test_bad_values_name_the_variable(env: dict, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(**env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_configuration_page_lists_every_setting() -> None:
    """docs/configuration.md's table names exactly the variables the app reads."""
    page = (ROOT / "docs" / "configuration.md").read_text()
    listed = set(re.findall(r"^\| `([A-Z_]+)` \|", page, re.M))
    assert listed == settings_read() - {"XDG_CACHE_HOME"}


def test_the_configuration_page_gives_the_apps_defaults() -> None:
    """Each literal default in docs/configuration.md's table is the app's own."""
    page = (ROOT / "docs" / "configuration.md").read_text()
    rows = re.findall(r"^\| `([A-Z_]+)` \| `([^`$]*)` \|", page, re.M)
    assert len(rows) > 20
    for name, value in rows:
        if name == "MODEL_PATH":  # relative to where the server starts: the repo root
            assert (ROOT / value).resolve() == MODEL.resolve()
            continue
        assert load(**{name: value}) == load(), name


def test_compose_defaults_are_the_apps_defaults() -> None:
    """docker-compose.yml passes each setting through with a fallback; each fallback
    must be the app's own default, or compose would quietly change it."""
    compose = (ROOT / "docker-compose.yml").read_text()
    defaults = dict(re.findall(r"^  ([A-Z_]+): \"?\$\{\1:-(.*)\}\"?$", compose, re.M))
    set_by_the_service = {"HOST", "PORT", "MODEL_PATH"}
    machine_dependent = {"INFERENCE_WORKERS", "MODEL_CACHE_DIR", "XDG_CACHE_HOME", "MODEL_NAME"}
    assert set(defaults) == settings_read() - set_by_the_service - machine_dependent
    for name, value in defaults.items():
        assert load(**{name: value}) == load(), name


def test_the_configuration_page_is_the_table() -> None:
    """docs/configuration.md's table is made from app/settings.py's SETTINGS, row for row."""
    assert docs_table() in (ROOT / "docs" / "configuration.md").read_text()


def test_the_table_is_the_settings() -> None:
    assert [row.field for row in SETTINGS] == [f.name for f in fields(Settings)]
    assert settings_read() == VARIABLES


def test_feedback_is_off_by_default_and_its_token_is_never_shown() -> None:
    """FEEDBACK_DIR unset (or empty, as compose passes it) is off; the hold takes fractions
    of a minute (tests shorten it); a token too short is refused without repeating it, and
    a settings object's repr (what a log line of it would show) leaves the token out."""
    assert load().feedback_dir is None and load(FEEDBACK_DIR="").feedback_dir is None
    assert str(load(FEEDBACK_DIR="/srv/feedback").feedback_dir) == "/srv/feedback"
    assert load(FEEDBACK_HOLD_MINUTES="0.01").feedback_hold_minutes == 0.01
    assert load().admin_token == "" and load().feedback_new_labels is False
    with pytest.raises(SettingsError) as caught:
        load(ADMIN_TOKEN="hunter2 hunter2 hunter2")
    assert str(caught.value).startswith("ADMIN_TOKEN=(hidden) is not valid: expected at least 16")
    assert "hunter2" not in str(caught.value)
    token = "a-token-of-the-admin-0123"
    settings = load(ADMIN_TOKEN=token)
    assert settings.admin_token == token and token not in repr(settings)


def test_log_format_auto_is_text_in_a_terminal_only() -> None:
    assert load(LOG_FORMAT="json").json_logs and not load(LOG_FORMAT="text").json_logs
    assert load().log_format == "auto" and load().json_logs  # pytest's stderr is no terminal


def test_the_benchmark_starts_servers_from_the_apps_defaults(monkeypatch) -> None:
    """bench/ cleans every setting out of the environment it starts servers with, the
    ones whose variable is not their field's name too."""
    from bench.servers import clean_env

    for variable in ("QUEUE_TIMEOUT", "KEEP_ALIVE_TIMEOUT", "EXAMPLE_IMAGES", "PORT"):
        monkeypatch.setenv(variable, "1")
    monkeypatch.setenv("PATH_OF_MINE", "kept")
    cleaned = clean_env()
    assert not VARIABLES & set(cleaned) and cleaned["PATH_OF_MINE"] == "kept"
