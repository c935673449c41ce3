"""docker-compose.yml as `docker compose config` would resolve it: `${VAR:-default}` interpolation,
YAML anchors and merge keys, and override files merged service by service."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SECURE_OVERLAY = ROOT / "deploy/compose/secure-kafka.yml"
_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable syntax: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        have = env.get(name)
        unset = have is None or (op is not None and op.startswith(":") and have == "")
        if op in (":?", "?") and unset:
            raise KeyError(f"{name}: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return have or ""

    return _VAR.sub(one, value)


def _merge(base: Any, over: Any) -> Any:
    """Override semantics of compose: mappings merge key by key; other values are replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return over


def load(*files: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The merged, interpolated model; `x-*` extension keys are dropped as compose does."""
    model: dict[str, Any] = {}
    for path in files or (COMPOSE_FILE,):
        raw = yaml.safe_load(path.read_text())
        raw = {k: v for k, v in raw.items() if not k.startswith("x-")}
        model = _merge(model, interpolate(json.loads(json.dumps(raw)), env or {}))
    return model


def raw(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The file as written (anchors resolved by YAML), for schema validation."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON Schema as check-jsonschema vendors it (`vendor.compose-spec`,
    from the compose-spec project via SchemaStore), read from the installed distribution's files
    without importing the package (its CLI module needs a newer click than faust-streaming allows)."""
    dist = importlib.metadata.distribution("check-jsonschema")
    path = Path(str(dist.locate_file("check_jsonschema/builtin_schemas/vendor/compose-spec.json")))
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def schema_errors(path: Path) -> list[str]:
    validator = jsonschema.Draft202012Validator(compose_schema())
    found = sorted(validator.iter_errors(raw(path)), key=lambda e: list(e.path))
    return [f"{path.name}: {'.'.join(map(str, e.path))}: {e.message}" for e in found]


def main(argv: list[str]) -> int:
    """`python -m tests.deploykit.compose FILE...`: validate compose files against the spec (CI)."""
    errors = [line for name in argv for line in schema_errors(Path(name))]
    for line in errors:
        print(line, file=sys.stderr)
    print(f"{len(argv)} compose files checked against the Compose specification: {len(errors)} errors")
    return 1 if errors or not argv else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
