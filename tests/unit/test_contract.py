"""docs/contract.md and the code name the same headers, reasons, metrics and CLI verbs, both ways.

A name in the code that the contract does not list fails, and so does a name the contract lists
that the code does not have. Header names and reason codes are also spelled only in their one
module (workers/messages/headers.py, workers/messages/reasons.py).
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path
from typing import get_args

import pytest

from workers.cli.main import build_parser
from workers.config.settings import load_settings
from workers.errors import PoisonMessage
from workers.messages import headers, reasons
from workers.telemetry.drift import DriftMonitor
from workers.telemetry.metrics import Metrics
from workers.telemetry.shadow import ShadowMetrics

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "docs" / "contract.md"

# Files others are rewriting (issue 9) that still spell a reason; remove an entry once it is gone.
LEFT_FOR_ISSUE_9: dict[str, set[str]] = {}


# -- the contract as written ---------------------------------------------------------------
def sections(text: str) -> dict[str, str]:
    """`## Title` → the text under it, up to the next `## `."""
    out: dict[str, str] = {}
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        out[title.strip()] = body
    return out


def table_rows(section: str) -> list[list[str]]:
    """Cells of each body row of the markdown tables in a section (header and rule rows dropped)."""
    rows: list[list[str]] = []
    lines = [line.strip() for line in section.splitlines()]
    for i, line in enumerate(lines):
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        if i + 1 < len(lines) and set(lines[i + 1]) <= set("|-: ") and lines[i + 1].startswith("|"):
            continue  # the header row of a table
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def first_column_names(section: str) -> list[str]:
    """The backticked name that opens each table row."""
    names: list[str] = []
    for cells in table_rows(section):
        match = re.fullmatch(r"`([^`]+)`", cells[0])
        assert match, f"row {cells} does not open with a `name`"
        names.append(match.group(1))
    return names


@pytest.fixture(scope="module")
def contract() -> dict[str, str]:
    return sections(CONTRACT.read_text())


# -- the code ------------------------------------------------------------------------------
# Set on a consumed message inside the worker when its header names cannot be read; never produced.
IN_PROCESS_ONLY = {headers.UNREADABLE}


def header_constants() -> set[str]:
    """Every header name the code defines that a record on a topic can carry."""
    names = {v for k, v in vars(headers).items() if k.isupper() and isinstance(v, str)}
    return names - IN_PROCESS_ONLY


def metric_names() -> set[str]:
    """A worker's series and a shadow worker's (`ontime worker --shadow`)."""
    metrics = Metrics(load_settings("acoustic").pipeline, ["infer"])
    DriftMonitor(metrics.pipeline, ["infer"], metrics.registry)
    shadow = ShadowMetrics("acoustic", "infer")
    families = [*metrics.registry.collect(), *shadow.registry.collect()]
    return {f.name + ("_total" if f.type == "counter" else "") for f in families}


def cli_commands() -> set[str]:
    """`ontime VERB` or `ontime VERB SUBVERB` for every command the parser has."""

    def choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    out: set[str] = set()
    for verb, sub in choices(build_parser()).items():
        subs = choices(sub)
        out |= {f"ontime {verb} {s}" for s in subs} if subs else {f"ontime {verb}"}
    return out


def poison_reasons() -> set[str]:
    seen: set[str] = set()
    todo: list[type[PoisonMessage]] = [PoisonMessage]
    while todo:
        cls = todo.pop()
        seen.add(cls.reason)
        todo.extend(cls.__subclasses__())
    return seen


# -- both ways -----------------------------------------------------------------------------
def test_headers(contract: dict[str, str]) -> None:
    listed = first_column_names(contract["Headers"])
    assert len(listed) == len(set(listed)), "a header is listed twice"
    assert set(listed) == header_constants()


def test_reasons(contract: dict[str, str]) -> None:
    rows = table_rows(contract["Late and DLQ reasons"])
    by_topic: dict[str, set[str]] = {"`P.late`": set(), "`P.dlq`": set()}
    for name, topic, _meaning in rows:
        by_topic[topic].add(name.strip("`"))
    assert by_topic["`P.late`"] == set(reasons.LATE_REASONS)
    assert by_topic["`P.dlq`"] == set(reasons.DLQ_REASONS)


def test_reason_constants_agree_among_themselves() -> None:
    assert get_args(reasons.ShedReason) == (reasons.EXPIRED, reasons.INSUFFICIENT_BUDGET)
    assert poison_reasons() <= set(reasons.DLQ_REASONS)
    assert not set(reasons.LATE_REASONS) & set(reasons.DLQ_REASONS)


def test_metrics(contract: dict[str, str]) -> None:
    assert set(first_column_names(contract["Metrics"])) == metric_names()


def test_cli(contract: dict[str, str]) -> None:
    assert set(first_column_names(contract["CLI"])) == cli_commands()


def test_reserved_sections_stay_marked(contract: dict[str, str]) -> None:
    assert "Control topic (issue 9)" in contract
    assert "Per-device events: `P.events` (issue 12)" in contract


def test_the_table_parser_sees_a_missing_name() -> None:
    text = "## Headers\n\n| header | on |\n|---|---|\n| `ontime-id` | all |\n"
    assert first_column_names(sections(text)["Headers"]) == ["ontime-id"]
    assert set(first_column_names(sections(text)["Headers"])) != header_constants()


# -- spelled once --------------------------------------------------------------------------
def _literals(path: Path) -> list[str]:
    """String constants of a module, f-string pieces included, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def spelled_elsewhere() -> dict[str, set[str]]:
    """file → header names or reason codes its string literals spell, outside their own modules."""
    spelled = header_constants() | IN_PROCESS_ONLY
    names = sorted(spelled - {headers.TRACEPARENT, headers.TRACESTATE}, key=len, reverse=True)
    header_re = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?![\w-])")
    codes = set(reasons.LATE_REASONS) | set(reasons.DLQ_REASONS)
    own = {"workers/messages/headers.py", "workers/messages/reasons.py"}
    out: dict[str, set[str]] = {}
    for package in ("workers", "schemas", "pipelines"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in own:
                continue
            found = {m for text in _literals(path) for m in header_re.findall(text)}
            found |= {text for text in _literals(path) if text in codes}
            found -= LEFT_FOR_ISSUE_9.get(rel, set())
            if found:
                out[rel] = found
    return out


def test_header_names_and_reasons_are_spelled_once() -> None:
    assert spelled_elsewhere() == {}
