"""docker-compose.yml as `docker compose config` would resolve it: `${VAR:-default}` interpolation,
YAML anchors and merge keys, and override files merged service by service."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
