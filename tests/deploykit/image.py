"""The Dockerfile's stages as BuildKit's own parser reads them: base, env, user, entrypoint, cmd."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    """One `FROM ... AS name` stage with what it inherits from the stage it is built on."""

    name: str
    base: str
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    copies: list[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    """Every stage in order; a stage built `FROM` another starts with a copy of its state."""
    args: dict[str, str] = {}
    out: list[Stage] = []
    current: Stage | None = None
    for cmd in dockerfile.parse_file(str(path)):
        name, value = cmd.cmd.upper(), list(cmd.value)
        if name == "ARG" and current is None:
            key, _, default = value[0].partition("=")
            args[key] = default
        elif name == "FROM":
            base = _expand(value[0], args)
            stage_name = value[2] if len(value) > 2 and value[1].upper() == "AS" else str(len(out))
            parent = next((s for s in out if s.name == base), None)
            current = Stage(stage_name, base)
            if parent is not None:
                current.env = dict(parent.env)
                current.user, current.entrypoint, current.cmd = parent.user, parent.entrypoint, parent.cmd
            out.append(current)
        elif current is None:
            continue
        elif name == "ENV":
            for key, val in zip(value[::2], value[1::2], strict=True):
                current.env[key] = _expand(val, current.env)
        elif name == "USER":
            current.user = value[0]
        elif name == "ENTRYPOINT":
            current.entrypoint = value if cmd.json else ["/bin/sh", "-c", " ".join(value)]
        elif name == "CMD":
            current.cmd = value if cmd.json else ["/bin/sh", "-c", " ".join(value)]
        elif name == "RUN":
            current.runs.append(" ".join(value))
        elif name == "COPY":
            current.copies.append((tuple(cmd.flags), tuple(value)))
        elif name == "EXPOSE":
            current.exposed.extend(value)
    return out


def stage(name: str, path: Path = DOCKERFILE) -> Stage:
    found = {s.name: s for s in stages(path)}
    return found[name]
