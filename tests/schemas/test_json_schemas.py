"""The shipped JSON Schema files are themselves valid, and agree with the Python defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

import schemas
from schemas import checking, definitions
from tests.schemas.samples import DEFINITION

SCHEMA_DIR = Path(schemas.__file__).parent / "json"
SCHEMA_FILES = sorted(
    path.relative_to(SCHEMA_DIR).as_posix() for path in SCHEMA_DIR.rglob("*.json")
)


def test_the_files_are_shipped() -> None:
    assert "cloudevent.schema.json" in SCHEMA_FILES
    assert "sequences.schema.json" in SCHEMA_FILES
    assert len(SCHEMA_FILES) >= 45


@pytest.mark.parametrize("relative_path", SCHEMA_FILES)
def test_each_file_passes_the_draft_07_metaschema(relative_path: str) -> None:
    document = checking.schema_document(relative_path)

    assert document["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(document)


def test_sequence_applied_refers_to_the_sequences_schema_by_id() -> None:
    sequences = checking.schema_document("sequences.schema.json")
    applied = checking.schema_document("events/sequence.applied.v1.schema.json")
    registry: Registry[Any] = Registry().with_resource(
        sequences["$id"], Resource.from_contents(sequences)
    )

    validator = jsonschema.Draft7Validator(applied, registry=registry)

    assert validator.is_valid(DEFINITION)
    assert validator.is_valid({"sequences": []})
    assert not validator.is_valid({"account": {}})


def _defaults(properties: dict[str, Any]) -> dict[str, Any]:
    return {key: value["default"] for key, value in properties.items() if "default" in value}


def test_the_defaults_written_in_the_schema_are_the_ones_filled_in() -> None:
    found = checking.schema_document("sequences.schema.json")["definitions"]
    sequence = found["sequence"]["properties"]

    assert _defaults(found["account"]["properties"]) == definitions.ACCOUNT_DEFAULTS
    assert _defaults(sequence) == definitions.SEQUENCE_DEFAULTS
    assert _defaults(sequence["schedule"]["properties"]) == definitions.SCHEDULE_DEFAULTS
    assert _defaults(found["step"]["allOf"][0]["properties"]) == definitions.STEP_DEFAULTS
    assert _defaults(found["delay"]["allOf"][0]["properties"]) == definitions.TIME_OF_DAY_DEFAULTS
    # a trigger's action: per type, disenroll for call_duration and enroll for the others
    by_duration = next(
        part for part in found["trigger"]["allOf"] if "call_duration" in str(part.get("if"))
    )
    assert _defaults(by_duration["then"]["properties"]) == (
        definitions.CALL_DURATION_TRIGGER_DEFAULTS
    )
    assert _defaults(by_duration["else"]["properties"]) == definitions.TRIGGER_DEFAULTS
