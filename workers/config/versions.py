"""Model versions on disk: `<pipeline>/<variant>[@<version>]` names one verified artifact.

A variant directory holds its current version at the top (`card.json` + `model.onnx`, the card's
`version` naming it) and any other version under `versions/<version>/`, each with its own card
and sha256. A reference without `@` is the top-level version, so every path that worked before
still does; `@<version>` pins one, and a pinned card must say that version.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from workers.errors import ModelError

VERSIONS = "versions"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


def split_ref(ref: str) -> tuple[str, str | None]:
    """`acoustic/student-int8@2.0.0` → (`acoustic/student-int8`, `2.0.0`); no `@` → (ref, None)."""
    variant, sep, version = ref.partition("@")
    if not sep:
        return ref, None
    if not _VERSION.fullmatch(version):
        raise ModelError(f"model {ref}: {version!r} is not a version (letters, digits, . _ + -)")
    return variant, version


def with_version(ref: str, version: str) -> str:
    """The reference of `version` of `ref`'s variant; a `version` holding a `/` is a whole reference."""
    if "/" in version:
        return version
    variant, _ = split_ref(ref)
    split_ref(f"{variant}@{version}")  # validates
    return f"{variant}@{version}"


def version_dir(ref: str, root: Path) -> Path:
    """The directory of `ref`: `versions/<v>/` when it exists, else the variant's top level."""
    variant, version = split_ref(ref)
    top = root / variant
    if version is not None and (top / VERSIONS / version).is_dir():
        return top / VERSIONS / version
    return top


def versions_of(ref: str, root: Path) -> list[str]:
    """Every version of `ref`'s variant on disk, the top-level one first."""
    variant, _ = split_ref(ref)
    top = root / variant
    found: list[str] = []
    with contextlib.suppress(OSError, ValueError, KeyError):
        found.append(str(json.loads((top / "card.json").read_text())["version"]))
    if (top / VERSIONS).is_dir():
        found += sorted(p.name for p in (top / VERSIONS).iterdir() if (p / "card.json").is_file())
    return list(dict.fromkeys(found))
