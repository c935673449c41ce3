"""Export the JSON Schema of every message model to `schemas/json/` for other languages.

Run `python -m schemas.export`; a unit test fails when the committed files drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.errors import ErrorRecord
from schemas.events import Event
from schemas.results import Result

JSON_DIR = Path(__file__).resolve().parent / "json"
EXPORTED: dict[str, type[BaseModel]] = {"result": Result, "error-record": ErrorRecord, "event": Event}


def rendered() -> dict[str, str]:
    """File name → JSON Schema text, exactly as committed."""
    out: dict[str, str] = {}
    for name, model in EXPORTED.items():
        schema: dict[str, Any] = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://ontime.dev/schemas/{name}.json"
        out[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def main() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for file_name, text in rendered().items():
        (JSON_DIR / file_name).write_text(text)
        print(f"wrote {JSON_DIR / file_name}")


if __name__ == "__main__":
    main()
