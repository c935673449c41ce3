"""The Helm chart rendered by a real `helm template`, and its manifests validated offline.

Kubernetes kinds are checked against the Kubernetes OpenAPI schemas that kubernetes-validate
bundles (strict: unknown fields are errors); the custom resources (KEDA, prometheus-operator)
against the small schemas in deploy/schemas/, written from the fields their CRDs document.

    python -m tests.deploykit.manifests FILE.yaml ...   # CI: validate rendered manifests
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm/ontime"
SCHEMAS = ROOT / "deploy/schemas"
PRODUCTION_VALUES = CHART / "ci/production-values.yaml"
KUBERNETES_VERSION = "1.34.0"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring-servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring-prometheusrule.json",
}
HELM_VERSION = "v3.19.5"


def helm_binary() -> str | None:
    """The helm .ci/helm built (cached), or one on PATH; None when neither exists."""
    cache = Path(os.environ.get("ONTIME_CACHE_DIR") or Path.home() / ".cache/ontime")
    built = cache / "go-bin" / f"helm-{HELM_VERSION}"
    if built.is_file():
        return str(built)
    return shutil.which("helm")


def render(
    values: Sequence[Path] = (), sets: Sequence[str] = (), release: str = "ontime", helm: str | None = None
) -> list[dict[str, Any]]:
    """`helm template` output as a list of manifests (empty documents dropped)."""
    binary = helm or helm_binary()
    if binary is None:
        raise FileNotFoundError("helm not found: run .ci/helm to build it")
    cmd = [binary, "template", release, str(CHART), "--namespace", "ontime"]
    for path in values:
        cmd += ["-f", str(path)]
    for item in sets:
        cmd += ["--set", item]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def errors(doc: dict[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    """Why one manifest is invalid (empty when it is valid)."""
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    schema_file = CRD_SCHEMAS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if schema_file is not None:
        schema = json.loads((SCHEMAS / schema_file).read_text())
        found = jsonschema.Draft7Validator(schema).iter_errors(doc)
        return [f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in found]
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{name}: no schema for {doc.get('apiVersion')} {doc.get('kind')}: {exc}"]
    return []


def main(argv: list[str]) -> int:
    found: list[str] = []
    count = 0
    for path in argv:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if doc:
                count += 1
                found += errors(doc)
    for line in found:
        print(line, file=sys.stderr)
    kinds = "Kubernetes schemas " + KUBERNETES_VERSION + " (strict) and deploy/schemas"
    print(f"{count} manifests checked against {kinds}: {len(found)} errors")
    return 1 if found or count == 0 else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
