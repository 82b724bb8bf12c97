"""hubfleet.config.values: Helm's merge semantics and readable schema errors (no chart needed). The same merge
checked against Helm's own Go code, and `hubfleet values check`: tests/integration/platform/test_chart_render.py."""

from __future__ import annotations

import pytest
import yaml

from hubfleet.config.values import combine, format_path, helm_merge, load_values, validate_values
from hubfleet.yamlfile import YAMLFileError

CHART = {
    "hub": {"config": {"JupyterHub": {"admin_access": True, "authenticator_class": "dummy"}}, "extraEnv": {}},
    "proxy": {"https": {"enabled": False, "hosts": [], "letsencrypt": {"contactEmail": None}}},
    "cull": {"enabled": True, "timeout": 3600},
}


@pytest.mark.parametrize(
    ("base", "overlays", "expected"),
    [
        # maps merge deeply
        ({"a": {"b": 1, "c": 2}}, [{"a": {"c": 3, "d": 4}}], {"a": {"b": 1, "c": 3, "d": 4}}),
        # lists replace, never append
        ({"a": [1, 2, 3]}, [{"a": [4]}], {"a": [4]}),
        ({"a": [{"x": 1}]}, [{"a": [{"y": 2}]}], {"a": [{"y": 2}]}),
        # null deletes a key, also a chart default and a whole subtree
        ({"a": 1, "b": 2}, [{"a": None}], {"b": 2}),
        ({"a": {"b": {"c": 1}}, "d": 1}, [{"a": {"b": None}}], {"a": {}, "d": 1}),
        # ... but a null for a key the chart does not have stays null (Helm keeps it)
        ({"a": 1}, [{"zzz": None}], {"a": 1, "zzz": None}),
        ({}, [{"a": 1}, {"a": None}], {"a": None}),
        # a later file's null deletes a chart default an earlier file changed; a later file can set it again
        ({"a": 0}, [{"a": 1}, {"a": None}], {}),
        ({"a": 1}, [{"a": None}, {"a": 2}], {"a": 2}),
        # the chart's own `key:` defaults with no value are dropped (as Helm does)
        ({"a": None, "b": {"c": None}}, [{}], {"b": {}}),
        ({"a": None}, [{"a": None}], {}),
        # nulls inside a brand-new mapping are kept too
        ({}, [{"a": {"b": None, "c": 1}}], {"a": {"b": None, "c": 1}}),
        # type changes replace
        ({"a": {"b": 1}}, [{"a": "text"}], {"a": "text"}),
        ({"a": "text"}, [{"a": {"b": 1}}], {"a": {"b": 1}}),
        ({"a": [1]}, [{"a": {"b": 1}}], {"a": {"b": 1}}),
        # scalars replace; falsy values are values, not deletions
        ({"a": True, "b": 1, "c": "x"}, [{"a": False, "b": 0, "c": ""}], {"a": False, "b": 0, "c": ""}),
        # order of overlays matters: the last wins
        ({}, [{"a": 1}, {"a": 2}, {"a": 3}], {"a": 3}),
        # no overlays, None overlays
        ({"a": 1}, [], {"a": 1}),
        (None, [None, {"a": 1}], {"a": 1}),
    ],
)
def test_helm_merge(base, overlays, expected):
    assert helm_merge(base, *overlays) == expected


def test_helm_merge_realistic_and_does_not_mutate():
    overlay = {
        "hub": {"config": {"JupyterHub": {"authenticator_class": "hubfleet", "admin_access": None}}},
        "proxy": {"https": {"enabled": True, "hosts": ["hub.example.org"]}},
        "cull": None,
    }
    before_chart, before_overlay = yaml.safe_dump(CHART), yaml.safe_dump(overlay)
    merged = helm_merge(CHART, overlay)
    assert merged == {
        "hub": {"config": {"JupyterHub": {"authenticator_class": "hubfleet"}}, "extraEnv": {}},
        "proxy": {"https": {"enabled": True, "hosts": ["hub.example.org"], "letsencrypt": {}}},  # chart nulls dropped
    }
    assert yaml.safe_dump(CHART) == before_chart and yaml.safe_dump(overlay) == before_overlay
    merged["proxy"]["https"]["hosts"].append("x")  # the result shares nothing with the inputs
    assert overlay["proxy"]["https"]["hosts"] == ["hub.example.org"]


def test_helm_merge_refuses_a_non_mapping_overlay():
    with pytest.raises(TypeError, match="must be a mapping, got list"):
        helm_merge({}, [1, 2])


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        ([], "(root)"),
        (["proxy"], "proxy"),
        (["proxy", "https", "hosts", 0], "proxy.https.hosts[0]"),
        ([0, "a"], "[0].a"),
    ],
)
def test_format_path(parts, text):
    assert format_path(parts) == text


SCHEMA7 = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "proxy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "https": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "hosts": {"type": "array", "items": {"type": "string"}},
                        "letsencrypt": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"contactEmail": {"type": ["string", "null"]}},
                        },
                    },
                },
                "labels": {"type": "object", "patternProperties": {"^[a-z]": {"type": "string"}},
                           "additionalProperties": False},
            },
        }
    },
}


def test_validate_values_reports_readable_paths():
    values = {
        "proxy": {
            "htps": {"enabled": True},
            "https": {"hosts": ["ok", 7], "letsencrypt": {"contactEmail": 42}},
            "labels": {"fine": "x", "Bad": "y"},
        }
    }
    errors = validate_values(values, SCHEMA7)
    assert "proxy.htps: unknown key (not in the chart's schema); did you mean 'https'?" in errors
    assert "proxy.https.letsencrypt.contactEmail: 42 is not of type 'string', 'null'" in errors
    assert "proxy.https.hosts[1]: 7 is not of type 'string'" in errors
    assert any(e.startswith("proxy.labels.Bad: unknown key") and "accepts" in e for e in errors), errors
    assert len(errors) == 4
    assert validate_values({"proxy": {"https": {"hosts": ["a"]}}}, SCHEMA7) == []


def test_validate_values_uses_the_draft_the_schema_declares():
    # dependentRequired exists from draft 2019-09 on: a Draft 7 validator would ignore it
    body = {"type": "object", "dependentRequired": {"a": ["b"]}}
    assert validate_values({"a": 1}, body) == []  # no $schema: Draft 7, as Helm
    errors = validate_values({"a": 1}, {"$schema": "https://json-schema.org/draft/2020-12/schema", **body})
    assert errors == ["(root): 'b' is a dependency of 'a'"]


def test_validate_values_refuses_a_broken_schema():
    from jsonschema.exceptions import SchemaError

    with pytest.raises(SchemaError):
        validate_values({}, {"type": "no-such-type"})


def test_combine_remembers_which_file_set_each_key():
    values, origin = combine({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}, "d": None}, names=["base.yaml", "site.yaml"])
    assert values == {"a": {"b": 1, "c": [2]}, "d": None}
    assert origin == {("a",): "site.yaml", ("a", "b"): "base.yaml", ("a", "c"): "site.yaml", ("d",): "site.yaml"}


def test_load_values(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# only a comment\n")
    assert load_values(empty) == {}
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n")
    with pytest.raises(YAMLFileError, match="list.yaml: .*expected object, got list"):
        load_values(listy)
    broken = tmp_path / "broken.yaml"
    broken.write_text("proxy: [unclosed\n")
    with pytest.raises(YAMLFileError, match=r"broken.yaml: line 2, column 1: not valid YAML"):
        load_values(broken)
    with pytest.raises(YAMLFileError, match="missing.yaml: no such file"):
        load_values(tmp_path / "missing.yaml")
