"""Validate custom resources offline against the real CRD schemas in ../shared/data/crds (see its SOURCE.md).

`jsonschema` checks types, enums and required fields of the CRD's openAPIV3Schema; on top of that every object
is checked strictly for unknown fields (what the API server's strict field validation rejects), except where the
schema says `x-kubernetes-preserve-unknown-fields` or gives `additionalProperties`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml


@cache
def _crds(crd_dir: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, for every CRD file in `crd_dir`."""
    schemas = {}
    for path in sorted(Path(crd_dir).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def known(crd_dir: str | Path, obj: dict[str, Any]) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in _crds(str(crd_dir))


def _unknown_fields(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    errors = []
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                errors += _unknown_fields(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                errors += _unknown_fields(item, extra, f"{path}.{key}")
            elif props is not None and extra is not True:
                errors.append(f"{path}.{key}: unknown field")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += _unknown_fields(item, schema["items"], f"{path}[{i}]")
    return errors


def validate(crd_dir: str | Path, obj: dict[str, Any]) -> list[str]:
    """Problems with `obj` against its CRD's schema (empty: valid). Raises KeyError for an unknown kind."""
    schema = _crds(str(crd_dir))[(obj["apiVersion"], obj["kind"])]
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]
    errors += _unknown_fields(obj, schema, "")
    if not obj.get("metadata", {}).get("name"):
        errors.append("metadata.name: required")
    return errors


@cache
def plurals(crd_dir: str) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(group, version, plural) -> (apiVersion, kind), for every CRD version in `crd_dir` (what a fake API serves)."""
    out = {}
    for path in sorted(Path(crd_dir).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                out[(spec["group"], version["name"], spec["names"]["plural"])] = (
                    f"{spec['group']}/{version['name']}", spec["names"]["kind"])
    return out


def unknown_fields(crd_dir: str | Path, obj: dict[str, Any]) -> list[str]:
    """The fields of `obj` its CRD's structural schema does not know (strict field validation refuses them)."""
    return _unknown_fields(obj, _crds(str(crd_dir))[(obj["apiVersion"], obj["kind"])], "")


def prune(crd_dir: str | Path, obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` without the fields its CRD's schema does not know: what the API server stores without strict validation."""
    def walk(value: Any, schema: dict[str, Any]) -> Any:
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return value
        if isinstance(value, dict):
            props, extra = schema.get("properties"), schema.get("additionalProperties")
            out = {}
            for key, item in value.items():
                if props is not None and key in props:
                    out[key] = walk(item, props[key])
                elif isinstance(extra, dict):
                    out[key] = walk(item, extra)
                elif props is None or extra is True:
                    out[key] = item
            return out
        if isinstance(value, list) and isinstance(schema.get("items"), dict):
            return [walk(item, schema["items"]) for item in value]
        return value

    return walk(obj, _crds(str(crd_dir))[(obj["apiVersion"], obj["kind"])])
