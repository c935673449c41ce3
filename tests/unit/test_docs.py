"""README.md and docs/ point only at files that exist inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
# A backticked path of the code: `workers/kafka/topics.py`, `schemas/json/result.json`, `pipelines/acoustic/`.
CODE_PATH = re.compile(r"`((?:workers|schemas|pipelines|models|tests|helm|docs)/[\w./-]*)`")


def test_links_stay_inside_the_repository() -> None:
    bad: list[str] = []
    checked = 0
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            checked += 1
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                bad.append(f"{page.relative_to(ROOT)}: {target}")
    assert bad == []
    assert checked > 10  # the pattern still finds the links


def test_code_paths_named_in_docs_exist() -> None:
    bad: list[str] = []
    names = [name for page in PAGES for name in CODE_PATH.findall(page.read_text())]
    assert len(names) > 20  # the pattern still finds the paths
    for page in PAGES:
        for name in CODE_PATH.findall(page.read_text()):
            if any(ch in name for ch in "<>*{") or name.endswith("_work/") or "/P/" in name:
                continue  # a pattern (`models/<pipeline>/<variant>/`, `pipelines/P/`), not a path
            if not (ROOT / name).exists():
                bad.append(f"{page.relative_to(ROOT)}: {name}")
    assert bad == []
