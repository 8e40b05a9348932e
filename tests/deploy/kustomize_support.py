"""Rendering the Kubernetes overlays and validating objects, shared by the deploy tests."""

from __future__ import annotations

import subprocess
from functools import cache
from typing import Any

import kubernetes_validate
import yaml

from tests.deploy.conftest import DEPLOY, require_command

KUBERNETES_VERSION = "1.30.0"
Manifest = dict[str, Any]
KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/prod")


@cache
def render(kustomization: str) -> tuple[Manifest, ...]:
    kubectl = require_command("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / kustomization)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def schema_errors(manifests: tuple[Manifest, ...] | list[Manifest]) -> list[str]:
    errors = []
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{name}: no schema: {exc}")
    return errors


def of_kind(manifests: tuple[Manifest, ...], *kinds: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in kinds]
