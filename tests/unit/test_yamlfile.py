"""The one YAML loader: parse errors with line numbers, schema errors with key paths, causes chained."""

from __future__ import annotations

import pytest

from hubfleet.errors import HubfleetError, explain
from hubfleet.yamlfile import YAMLFileError, load_yaml, parse_yaml

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "profiles": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["slug"],
                "additionalProperties": False,
                "properties": {"slug": {"type": "string"}, "cpu": {"type": "number", "exclusiveMinimum": 0}},
            },
        },
    },
}


def test_valid_document_is_returned():
    assert parse_yaml("profiles: [{slug: a, cpu: 2}]", schema=SCHEMA) == {"profiles": [{"slug": "a", "cpu": 2}]}


def test_empty_document_is_the_empty_value():
    assert parse_yaml("", empty={}) == {}


@pytest.mark.parametrize("text, where, what", [
    ("profiles: [{slug: a, cpux: 2}]", "profiles[0]", "unknown key 'cpux'"),
    ("profiles: [{cpu: 2}]", "profiles[0]", "'slug' is required"),
    ("profiles: [{slug: a, cpu: lots}]", "profiles[0].cpu", "expected number"),
    ("profiles: [{slug: a, cpu: 0}]", "profiles[0].cpu", "less than or equal to the minimum"),
    ("nodes: []", "(top level)", "unknown key 'nodes'"),
])
def test_schema_errors_name_the_key_path(text, where, what):
    with pytest.raises(YAMLFileError) as info:
        parse_yaml(text, source="p.yaml", schema=SCHEMA)
    msg = str(info.value)
    assert msg.startswith(f"p.yaml: {where}: ")
    assert what in msg
    assert isinstance(info.value, HubfleetError) and isinstance(info.value, ValueError)


def test_parse_error_names_the_line_and_chains_the_cause(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("profiles:\n  - slug: a\n   cpu: 2\n")
    with pytest.raises(YAMLFileError) as info:
        load_yaml(f)
    assert f"{f}: line 3" in str(info.value)
    assert info.value.__cause__ is not None
    assert "not valid YAML" in explain(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(YAMLFileError, match="no such file"):
        load_yaml(tmp_path / "nope.yaml", what="profiles file")


def test_explain_joins_chained_causes():
    try:
        try:
            raise OSError("connection refused")
        except OSError as e:
            raise HubfleetError("LDAP server ldap://x unreachable", fix="check server_urls") from e
    except HubfleetError as e:
        assert explain(e) == "LDAP server ldap://x unreachable (check server_urls): connection refused"
