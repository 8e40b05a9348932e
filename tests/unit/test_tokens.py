"""Token configuration (shared/tokens.py), certificate roles and the policy's choice of how to
identify callers (shared/access.py): syntax, defaults, and errors that never echo a token."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.access import AccessPolicy
from shared.config import ConfigError, Settings
from shared.roles import Role
from shared.tokens import find, fingerprint, generate_token, parse_entry, token_entries

SECRET = "s3cr3t-Token_value.with~all+the/allowed=chars"


def test_role_name_and_token() -> None:
    entry = parse_entry(f"writer:ci:{SECRET}", "here")
    assert (entry.name, entry.role, entry.secret, entry.bare) == (
        "ci", Role.WRITER, SECRET.encode(), False,
    )  # fmt: skip


def test_role_and_token_take_the_fingerprint_as_name() -> None:
    entry = parse_entry(f"admin:{SECRET}", "here")
    assert entry.role is Role.ADMIN
    assert entry.name == fingerprint(SECRET)
    assert entry.name.startswith("token-") and len(entry.name) == len("token-") + 12
    assert SECRET not in entry.name and SECRET not in repr(entry)


def test_an_empty_name_takes_the_fingerprint_too() -> None:
    assert parse_entry(f"reader::{SECRET}", "here").name == fingerprint(SECRET)


def test_a_bare_token_is_a_reader() -> None:
    entry = parse_entry(SECRET, "here")
    assert (entry.role, entry.bare, entry.name) == (Role.READER, True, fingerprint(SECRET))


def test_fingerprints_are_stable_and_differ_between_tokens() -> None:
    assert fingerprint(SECRET) == fingerprint(SECRET)
    assert fingerprint(SECRET) != fingerprint(SECRET + "x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"root:ops:{SECRET}", "unknown role"),
        (f"{SECRET}:with-a-colon", "unknown role"),
        ("writer:ci:", "a token is"),
        ("writer:ci:has space", "a token is"),
        ("writer:ci:has:colon", "a token is"),
        (f"writer:bad name!:{SECRET}", "a name is"),
        (f"writer:{'n' * 65}:{SECRET}", "a name is"),
    ],
)
def test_bad_entries_name_where_and_never_echo_the_entry(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        parse_entry(text, "DOPPEL_AUTH_TOKENS entry 3")
    assert "DOPPEL_AUTH_TOKENS entry 3" in str(raised.value)
    assert SECRET not in str(raised.value) and "has space" not in str(raised.value)


def test_the_variable_and_the_file_add_up(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("# comment\n\nadmin:ops:file-token-1\n  reader:dash:file-token-2  \n")
    settings = Settings(
        auth_tokens=f"writer:ci:{SECRET}, ,bare-one", auth_tokens_file=str(tokens_file)
    )
    entries = token_entries(settings)
    assert [(e.name, e.role) for e in entries] == [
        ("ci", Role.WRITER), (fingerprint("bare-one"), Role.READER), ("ops", Role.ADMIN),
        ("dash", Role.READER),
    ]  # fmt: skip


def test_the_same_token_twice_is_refused_naming_both_places(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"admin:ops:{SECRET}\n")
    settings = Settings(auth_tokens=f"writer:ci:{SECRET}", auth_tokens_file=str(tokens_file))
    with pytest.raises(ConfigError, match="line 1: the same token as DOPPEL_AUTH_TOKENS entry 1"):
        token_entries(settings)


def test_an_unreadable_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DOPPEL_AUTH_TOKENS_FILE: cannot read"):
        token_entries(Settings(auth_tokens_file=str(tmp_path / "missing")))


def test_find_matches_whole_tokens_only() -> None:
    entries = (parse_entry(f"writer:ci:{SECRET}", "a"), parse_entry("admin:ops:other-token", "b"))
    assert find(entries, SECRET) is entries[0]
    assert find(entries, "other-token") is entries[1]
    for wrong in ("", SECRET[:-1], SECRET + "x", SECRET.upper()):
        assert find(entries, wrong) is None


def test_generated_tokens_are_long_random_and_valid() -> None:
    tokens = {generate_token() for _ in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert len(token) >= 40
        assert parse_entry(f"admin:x:{token}", "here").secret == token.encode()


# -- how a server identifies callers -------------------------------------------------------------


def test_tokens_decide_when_set_even_under_mutual_tls() -> None:
    settings = Settings(auth_tokens=f"writer:ci:{SECRET}", tls_client_auth="require")
    assert AccessPolicy.from_settings(settings).mode == "tokens"


def test_mutual_tls_without_tokens_maps_certificates_to_roles() -> None:
    settings = Settings(
        tls_client_auth="require",
        tls_client_roles=(("script.internal", "service"), ("ops", "admin"), ("both", "reader")),
    )
    policy = AccessPolicy.from_settings(settings)
    assert policy.mode == "certificates"
    listed = policy._certificate_caller(
        {"x509_common_name": [b"script.internal"], "x509_subject_alternative_name": [b"x"]}
    )
    assert listed is not None and (listed.name, listed.role) == (
        "cert:script.internal",
        Role.SERVICE,
    )
    by_san = policy._certificate_caller(
        {"x509_common_name": [b"someone"], "x509_subject_alternative_name": [b"ops", b"both"]}
    )
    assert by_san is not None and by_san.role is Role.ADMIN  # The highest listed role.
    unlisted = policy._certificate_caller({"x509_common_name": [b"laptop"]})
    assert unlisted is not None and unlisted.role is Role.WRITER  # The default.
    assert policy._certificate_caller({}) is None


def test_the_default_certificate_role_is_configurable() -> None:
    settings = Settings(tls_client_auth="require", tls_client_default_role="reader")
    caller = AccessPolicy.from_settings(settings)._certificate_caller({"x509_common_name": [b"a"]})
    assert caller is not None and caller.role is Role.READER


def test_certificate_roles_without_mutual_tls_are_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="DOPPEL_TLS_CLIENT_ROLES needs DOPPEL_TLS_CLIENT_AUTH"):
        AccessPolicy.from_settings(Settings(tls_client_roles=(("a", "admin"),)))


def test_nothing_configured_is_open_on_loopback_only() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]"):
        local = Settings(host=host)
        assert AccessPolicy.from_settings(local).mode == "open"
        assert AccessPolicy.from_settings(local).warnings(local) == []
    for host in ("0.0.0.0", "::", "10.1.2.3", "studio.example.com"):
        with pytest.raises(ConfigError, match="DOPPEL_ALLOW_OPEN"):
            AccessPolicy.from_settings(Settings(host=host))
    public = Settings(host="0.0.0.0", allow_open=True)
    assert "anyone who reaches 0.0.0.0" in AccessPolicy.from_settings(public).warnings(public)[0]
    guarded = Settings(host="0.0.0.0", auth_tokens="writer:ci:abc")
    assert AccessPolicy.from_settings(guarded).mode == "tokens"


def test_bare_tokens_are_counted_in_a_warning_without_the_token() -> None:
    settings = Settings(auth_tokens=f"{SECRET},writer:ci:other-token")
    [warning] = AccessPolicy.from_settings(settings).warnings(settings)
    assert warning.startswith("1 token(s)") and SECRET not in warning


def test_environment_parsing_of_the_new_settings() -> None:
    settings = Settings.from_env(
        {
            "DOPPEL_FAULTS_ENABLED": "true",
            "DOPPEL_FAULTS": "render_delay_ms=5",
            "DOPPEL_TLS_CLIENT_ROLES": "script.doppel=service, ops@example.com=ADMIN",
            "DOPPEL_TLS_CLIENT_DEFAULT_ROLE": "Reader",
            "DOPPEL_SCRIPT_MAX_RECEIVE_BYTES": "1048576",
        }
    )
    assert settings.faults_enabled and settings.faults == "render_delay_ms=5"
    assert settings.tls_client_roles == (("script.doppel", "service"), ("ops@example.com", "admin"))
    assert settings.tls_client_default_role == "reader"
    assert settings.script_max_receive_bytes == 1048576


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DOPPEL_FAULTS": "render_delay_ms=5"}, "DOPPEL_FAULTS_ENABLED is not true"),
        ({"DOPPEL_TLS_CLIENT_ROLES": "a=root"}, "DOPPEL_TLS_CLIENT_ROLES"),
        ({"DOPPEL_TLS_CLIENT_DEFAULT_ROLE": "root"}, "DOPPEL_TLS_CLIENT_DEFAULT_ROLE"),
        ({"DOPPEL_SCENE_MAX_RECEIVE_BYTES": "100"}, "DOPPEL_SCENE_MAX_RECEIVE_BYTES"),
        ({"DOPPEL_CACHE_MAX_RECEIVE_BYTES": "4128768"}, "must fit DOPPEL_CACHE_MAX_RECEIVE_BYTES"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_secrets_are_out_of_the_settings_repr() -> None:
    settings = Settings(
        redis_url="redis://user:redis-pw@host/0?password=query-pw",
        auth_tokens=f"writer:ci:{SECRET}", auth_token=SECRET, anthropic_api_key="sk-key",
    )  # fmt: skip
    text = repr(settings)
    for secret in ("redis-pw", "query-pw", SECRET, "sk-key"):
        assert secret not in text
