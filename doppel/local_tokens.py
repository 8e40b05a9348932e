"""Token files: the one `doppel up` makes for the local stack, and the secrets of a deployment.

Local stack: when no tokens and no mutual TLS are configured, `doppel up` (and `doppel demo`)
protects the stack with tokens of its own, kept in `$XDG_DATA_HOME/doppelganger/auth-tokens`
(`~/.local/share/doppelganger/auth-tokens`; directory 0700, file 0600, made once and reused):
`admin:local-admin`, `service:local-services` (what the services send each other) and
`writer:local-cli`. The CLI sends the `local-cli` token when `DOPPEL_AUTH_TOKEN` is unset and it
talks to loopback addresses only, so `doppel generate` works against `doppel up` with no extra
step, while another user of the machine cannot call the stack. A file readable by others, or
owned by someone else, is refused. Delete the file to make new tokens.

Deployments: `python -m doppel.local_tokens compose` (`make secrets`) writes `.secrets/` and `.env`
for docker compose; `python -m doppel.local_tokens kubernetes --out DIR` writes the files of the
`doppelganger-auth` Secret (docs/deploy.md). Tokens are printed nowhere.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.access import is_loopback_host
from shared.config import ConfigError, Settings, resolve_data_dir
from shared.tokens import generate_token, parse_entries

LOCAL_FILE = "auth-tokens"
LOCAL_SERVICE_NAME = "local-services"
LOCAL_CLI_NAME = "local-cli"
HEADER = (
    "# Bearer tokens of the local stack, made by `doppel up` (delete this file for new ones).\n"
    "# role:name:token, one a line (README, Security). Keep it to yourself (mode 0600).\n"
)


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The data directory (DOPPEL_DATA_DIR, else the XDG default): beside the library."""
    source = os.environ if env is None else env
    return resolve_data_dir(source.get("DOPPEL_DATA_DIR", ""), source)


@dataclass(frozen=True)
class LocalTokens:
    """The local stack's tokens (never shown in a repr)."""

    path: Path
    service: str = field(repr=False)
    cli: str = field(repr=False)


def _write_new(path: Path, text: str, mode: int) -> bool:
    """Writes `text` to `path` only if it does not exist, all at once (a temporary file linked
    into place); False when someone else's file was there first."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)


def _check_private(path: Path) -> None:
    info = path.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(f"{path} belongs to another user; delete it to make new local tokens")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(f"{path} is readable by others: chmod 600 it, or delete it")


def read_local_tokens(path: Path) -> LocalTokens:
    _check_private(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {type(exc).__name__}") from None
    entries = parse_entries(
        (f"{path} line {number}", line.strip())
        for number, line in enumerate(lines, start=1)
        if line.strip() and not line.lstrip().startswith("#")
    )
    by_name = {entry.name: entry.secret.decode() for entry in entries}
    if LOCAL_SERVICE_NAME not in by_name or LOCAL_CLI_NAME not in by_name:
        raise ConfigError(f"{path} lacks the {LOCAL_CLI_NAME} or {LOCAL_SERVICE_NAME} token")
    return LocalTokens(path, by_name[LOCAL_SERVICE_NAME], by_name[LOCAL_CLI_NAME])


def ensure_local_tokens(directory: Path | None = None) -> LocalTokens:
    """The local stack's tokens, made on first use."""
    directory = data_dir() if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / LOCAL_FILE
    if not path.exists():
        lines = [
            f"admin:local-admin:{generate_token()}",
            f"service:{LOCAL_SERVICE_NAME}:{generate_token()}",
            f"writer:{LOCAL_CLI_NAME}:{generate_token()}",
        ]
        _write_new(path, HEADER + "\n".join(lines) + "\n", 0o600)
    return read_local_tokens(path)


def wants_local_tokens(settings: Settings) -> bool:
    """Whether `doppel up` should protect the stack with its own tokens: nothing else is set."""
    configured = settings.auth_tokens or settings.auth_tokens_file
    return not configured and settings.tls_client_auth != "require"


def local_stack_env(env: Mapping[str, str], tokens: LocalTokens) -> dict[str, str]:
    """The children's environment: the tokens file to accept, the service token to send."""
    return {
        **env,
        "DOPPEL_AUTH_TOKENS_FILE": str(tokens.path),
        "DOPPEL_AUTH_TOKEN": tokens.service,
    }


def _host(address: str) -> str:
    host, _, port = address.rpartition(":")
    return host if port.isdigit() else address


def client_settings(settings: Settings, env: Mapping[str, str] | None = None) -> Settings:
    """`settings` with the local CLI token when none is set, a local tokens file exists and
    every address the CLI calls is on loopback (so it never goes to another machine)."""
    if settings.auth_token:
        return settings
    path = data_dir(env) / LOCAL_FILE
    addresses = (settings.script_address, settings.scene_address, settings.monitor_address)
    if not path.exists() or not all(is_loopback_host(_host(a)) for a in addresses):
        return settings
    return settings.with_changes(auth_token=read_local_tokens(path).cli)


# -- deployments ---------------------------------------------------------------------------------

# File -> whether containers read it through a bind mount (then 0644 inside a 0700 directory:
# compose keeps the host's owner and mode, and the services run as uid 10001).
SECRET_FILES = {
    "auth-tokens": True,
    "prometheus-token": True,
    "service-token": False,
    "cli-token": False,
    "admin-token": False,
    "grafana-admin-password": False,
    "postgres-password": True,  # Read by the postgres container (uid 70) in compose.
    "database-url": False,  # The script service's DOPPEL_DATABASE_URL (Kubernetes Secret).
}
DATABASE_USER, DATABASE_NAME, DATABASE_HOST = "doppel", "doppelganger", "postgres:5432"


def deploy_secrets() -> dict[str, str]:
    """New contents of every file of SECRET_FILES."""
    admin, service, cli, prometheus, database_password = (generate_token() for _ in range(5))
    tokens = [
        f"admin:ops:{admin}",
        f"service:services:{service}",
        f"writer:cli:{cli}",
        f"reader:prometheus:{prometheus}",
    ]
    return {
        "auth-tokens": "# role:name:token (README, Security)\n" + "\n".join(tokens) + "\n",
        "prometheus-token": prometheus,
        "service-token": service,
        "cli-token": cli,
        "admin-token": admin,
        "grafana-admin-password": generate_token(),
        "postgres-password": database_password,
        "database-url": f"postgresql+asyncpg://{DATABASE_USER}:{database_password}@"
        f"{DATABASE_HOST}/{DATABASE_NAME}",
    }


def write_secrets(directory: Path, contents: Mapping[str, str], force: bool = False) -> None:
    """Writes the secret files into `directory` (0700); existing ones only with `force`."""
    existing = [name for name in contents if (directory / name).exists()]
    if existing and not force:
        raise ConfigError(f"{directory} already holds {', '.join(existing)}; --force replaces")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    for name, text in contents.items():
        path = directory / name
        path.unlink(missing_ok=True)
        if not _write_new(path, text, 0o600):
            raise ConfigError(f"{path} appeared while writing; run again")
        path.chmod(0o644 if SECRET_FILES.get(name) else 0o600)


def write_compose_env(path: Path, contents: Mapping[str, str], force: bool = False) -> None:
    """`.env` for docker compose: the values compose puts into the services' environment."""
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; --force replaces it")
    text = (
        "# Made by `make secrets` (python -m doppel.local_tokens compose); never commit it.\n"
        f"DOPPEL_SERVICE_TOKEN={contents['service-token']}\n"
        f"GRAFANA_ADMIN_PASSWORD={contents['grafana-admin-password']}\n"
        f"POSTGRES_PASSWORD={contents['postgres-password']}\n"
    )
    path.unlink(missing_ok=True)
    if not _write_new(path, text, 0o600):
        raise ConfigError(f"{path} appeared while writing; run again")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m doppel.local_tokens", description="Make the tokens of a deployment."
    )
    parser.add_argument("target", choices=("compose", "kubernetes"))
    parser.add_argument("--out", default=".secrets", help="directory for the files")
    parser.add_argument("--env-file", default=".env", help="compose: the .env to write")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    contents = deploy_secrets()
    out = Path(args.out)
    try:
        write_secrets(out, contents, args.force)
        if args.target == "compose":
            write_compose_env(Path(args.env_file), contents, args.force)
    except ConfigError as exc:
        print(f"local_tokens: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(sorted(contents))} into {out}/ (directory 0700)")
    if args.target == "compose":
        print(
            f"wrote {args.env_file} (DOPPEL_SERVICE_TOKEN, GRAFANA_ADMIN_PASSWORD, "
            "POSTGRES_PASSWORD; mode 0600)"
        )
        print(f"the CLI: export DOPPEL_AUTH_TOKEN=$(cat {out}/cli-token)")
    else:
        print(
            "kubectl -n doppelganger create secret generic doppelganger-auth "
            f"--from-file=auth-tokens={out}/auth-tokens "
            f"--from-file=service-token={out}/service-token"
        )
        print(
            "kubectl -n doppelganger create secret generic doppelganger-db "
            f"--from-file=postgres-password={out}/postgres-password "
            f"--from-file=database-url={out}/database-url"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
