"""Token files (doppel/local_tokens.py): the local stack's private tokens, when the CLI uses
them, and the secrets `make secrets` writes for compose and Kubernetes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from doppel import local_tokens
from shared.config import ConfigError, Settings
from shared.roles import Role
from shared.tokens import parse_entry


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_local_tokens_are_made_once_private_and_reused(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "doppelganger"
    first = local_tokens.ensure_local_tokens(directory)
    assert first.path == directory / "auth-tokens"
    assert mode(first.path) == 0o600 and mode(directory) == 0o700
    assert first.service != first.cli and len(first.cli) >= 40
    assert first.cli not in repr(first) and first.service not in repr(first)
    again = local_tokens.ensure_local_tokens(directory)
    assert (again.service, again.cli) == (first.service, first.cli)
    roles = {}
    for line in first.path.read_text().splitlines():
        if line and not line.startswith("#"):
            entry = parse_entry(line, "test")
            roles[entry.name] = entry.role
    assert roles == {"local-admin": Role.ADMIN, "local-services": Role.SERVICE,
                     "local-cli": Role.WRITER}  # fmt: skip
    assert not list(directory.glob(".*.tmp"))


def test_a_local_tokens_file_others_can_read_is_refused(tmp_path: Path) -> None:
    tokens = local_tokens.ensure_local_tokens(tmp_path)
    tokens.path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        local_tokens.ensure_local_tokens(tmp_path)


def test_a_local_tokens_file_without_the_cli_token_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth-tokens"
    path.write_text("admin:local-admin:abc\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="lacks the local-cli"):
        local_tokens.read_local_tokens(path)


def test_up_makes_tokens_only_when_nothing_else_guards_the_stack() -> None:
    assert local_tokens.wants_local_tokens(Settings())
    assert not local_tokens.wants_local_tokens(Settings(auth_tokens="writer:a:b"))
    assert not local_tokens.wants_local_tokens(Settings(auth_tokens_file="/etc/tokens"))
    assert not local_tokens.wants_local_tokens(Settings(tls_client_auth="require"))


def test_the_stack_env_accepts_the_file_and_sends_the_service_token(tmp_path: Path) -> None:
    tokens = local_tokens.ensure_local_tokens(tmp_path)
    env = local_tokens.local_stack_env({"DOPPEL_AUTH_TOKEN": "user's", "PATH": "/bin"}, tokens)
    assert env == {"PATH": "/bin", "DOPPEL_AUTH_TOKENS_FILE": str(tokens.path),
                   "DOPPEL_AUTH_TOKEN": tokens.service}  # fmt: skip


def test_the_cli_sends_the_local_token_to_loopback_only(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path)}
    assert local_tokens.client_settings(Settings(), env).auth_token == ""  # No file yet.
    tokens = local_tokens.ensure_local_tokens(local_tokens.data_dir(env))
    assert local_tokens.client_settings(Settings(), env).auth_token == tokens.cli
    for target in ("localhost:1", "[::1]:50051", "127.0.0.2:9"):
        local = Settings(script_target=target)
        assert local_tokens.client_settings(local, env).auth_token == tokens.cli, target
    remote = Settings(script_target="studio.example.com:50051")
    assert local_tokens.client_settings(remote, env).auth_token == ""
    assert (
        local_tokens.client_settings(Settings(monitor_target="10.0.0.5:4317"), env).auth_token == ""
    )
    mine = Settings(auth_token="given")
    assert local_tokens.client_settings(mine, env).auth_token == "given"


def test_the_data_dir_follows_xdg() -> None:
    assert local_tokens.data_dir({"XDG_DATA_HOME": "/x"}) == Path("/x/doppelganger")
    assert local_tokens.data_dir({}) == Path.home() / ".local" / "share" / "doppelganger"
    # Beside the library: DOPPEL_DATA_DIR wins, as it does for the library's SQLite file.
    assert local_tokens.data_dir({"DOPPEL_DATA_DIR": "/d", "XDG_DATA_HOME": "/x"}) == Path("/d")


def test_deploy_secrets_are_written_private_and_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / ".secrets"
    env_file = tmp_path / ".env"
    code = local_tokens.main(["compose", "--out", str(out), "--env-file", str(env_file)])
    assert code == 0
    assert mode(out) == 0o700 and mode(env_file) == 0o600
    assert (
        mode(out / "auth-tokens") == 0o644
    )  # Read by the containers' user; the directory guards it.
    assert mode(out / "prometheus-token") == 0o644
    assert mode(out / "postgres-password") == 0o644  # Read by the postgres container (uid 70).
    private_files = ("service-token", "cli-token", "admin-token", "grafana-admin-password")
    for private in (*private_files, "database-url"):
        assert mode(out / private) == 0o600, private
    text = (out / "auth-tokens").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    entries = {parse_entry(line, "test").name: parse_entry(line, "test") for line in lines}
    assert {name: e.role for name, e in entries.items()} == {
        "ops": Role.ADMIN, "services": Role.SERVICE, "cli": Role.WRITER, "prometheus": Role.READER,
    }  # fmt: skip
    assert entries["services"].secret.decode() == (out / "service-token").read_text()
    assert entries["cli"].secret.decode() == (out / "cli-token").read_text()
    text = env_file.read_text()
    assert f"DOPPEL_SERVICE_TOKEN={(out / 'service-token').read_text()}\n" in text
    assert f"GRAFANA_ADMIN_PASSWORD={(out / 'grafana-admin-password').read_text()}\n" in text
    password = (out / "postgres-password").read_text()
    assert f"POSTGRES_PASSWORD={password}\n" in text
    assert (out / "database-url").read_text() == (
        f"postgresql+asyncpg://doppel:{password}@postgres:5432/doppelganger"
    )
    before = (out / "auth-tokens").read_text()
    assert local_tokens.main(["compose", "--out", str(out), "--env-file", str(env_file)]) == 2
    assert (out / "auth-tokens").read_text() == before
    assert local_tokens.main(["kubernetes", "--out", str(out), "--force"]) == 0
    assert (out / "auth-tokens").read_text() != before


def test_two_secret_sets_differ(tmp_path: Path) -> None:
    first, second = local_tokens.deploy_secrets(), local_tokens.deploy_secrets()
    assert all(first[name] != second[name] for name in local_tokens.SECRET_FILES)
    assert os.environ.get("DOPPEL_AUTH_TOKEN") not in first.values()
