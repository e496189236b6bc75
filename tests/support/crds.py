"""Validate custom resources offline against the real CRD schemas in ../shared/data/crds (see its SOURCE.md).

`jsonschema` checks types, enums and required fields of the CRD's openAPIV3Schema; on top of that every object
is checked strictly for unknown fields (what the API server's strict field validation rejects), except where the
schema says `x-kubernetes-preserve-unknown-fields` or gives `additionalProperties`.

`prune` is the API server's structural pruning, generic over any CRD (the fake Kubernetes API applies it to
every custom resource it stores): kubernetes/kubernetes master,
staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning/algorithm.go - unknown fields are
dropped, `x-kubernetes-preserve-unknown-fields` keeps them (still pruning below known properties),
`additionalProperties` prunes each value by its schema, and apiVersion/kind/metadata of the root and of
`x-kubernetes-embedded-resource` objects are left alone.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml


@cache
def _versions(crd_dir: str) -> tuple[dict[str, Any], ...]:
    """Every CRD version in `crd_dir` (a folder or one file), read once: group/version, kind, plural, scope,
    served, openAPIV3Schema."""
    out = []
    folder = Path(crd_dir)
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else [folder]:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                out.append({"group_version": f"{spec['group']}/{version['name']}", "kind": spec["names"]["kind"],
                            "plural": spec["names"]["plural"], "scope": spec["scope"],
                            "served": bool(version.get("served", True)),
                            "schema": version["schema"]["openAPIV3Schema"]})  # fmt: skip
    return tuple(out)


@cache
def _crds(crd_dir: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, for every CRD file in `crd_dir` (a folder or one file)."""
    return {(v["group_version"], v["kind"]): v["schema"] for v in _versions(crd_dir)}


@cache
def _plurals(crd_dir: str) -> dict[tuple[str, str], tuple[str, str, bool]]:
    """(group/version, plural) -> (kind, scope, served) for every CRD file in `crd_dir`."""
    return {(v["group_version"], v["plural"]): (v["kind"], v["scope"], v["served"]) for v in _versions(crd_dir)}


def resource(crd_dirs, group_version: str, plural: str) -> tuple[str, dict[str, Any]] | None:
    """(kind, openAPIV3Schema) of `plural` in `group_version` among the CRDs of `crd_dirs` (None: not installed)."""
    for crd_dir in crd_dirs:
        found = _plurals(str(crd_dir)).get((group_version, plural))
        if found and found[2]:
            return found[0], _crds(str(crd_dir))[(group_version, found[0])]
    return None


def prune(value: Any, schema: dict[str, Any] | None, path: str = "", root: bool = True) -> list[str]:
    """Drop, in place, the fields of `value` that `schema` does not know; returns their paths ("spec.x[0].y")."""
    pruned: list[str] = []
    if root:
        schema = {**(schema or {}), "x-kubernetes-embedded-resource": True}
    if schema is not None and schema.get("x-kubernetes-preserve-unknown-fields"):
        return _skip_prune(value, schema, path)
    if isinstance(value, dict):
        for key in list(value):
            sub = f"{path}.{key}" if path else key
            if schema is not None and schema.get("x-kubernetes-embedded-resource") and key in _META:
                continue
            props = (schema or {}).get("properties") or {}
            extra = (schema or {}).get("additionalProperties")
            if key in props:
                pruned += prune(value[key], props[key], sub, False)
            elif isinstance(extra, dict):
                pruned += prune(value[key], extra, sub, False)
            elif extra is True:
                continue
            else:
                del value[key]
                pruned.append(sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            pruned += prune(item, (schema or {}).get("items"), f"{path}[{i}]", False)
    return pruned


def _skip_prune(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    pruned: list[str] = []
    if isinstance(value, dict):
        props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
        for key in list(value):
            sub = f"{path}.{key}" if path else key
            if schema.get("x-kubernetes-embedded-resource") and key in _META:
                continue
            if key in props:
                pruned += prune(value[key], props[key], sub, False)
            elif isinstance(extra, dict):
                pruned += prune(value[key], extra, sub, False)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            pruned += _skip_prune(item, schema["items"], f"{path}[{i}]")
    return pruned


_META = ("apiVersion", "kind", "metadata")


def schema_errors(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Type, enum, required-field and CEL-rule errors (what the API server answers with 422 Invalid), metadata
    aside."""
    schema = {**schema, "properties": {**schema.get("properties", {}), "metadata": {"type": "object"}}}
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]
    return errors + cel_errors(obj, schema)


# x-kubernetes-validations: a small subset of CEL, enough for the create-time rules of the CRDs labpipe writes
# (has(), size(), comparisons, in, matches, && || !). Transition rules (oldSelf) do not apply on create; rules with
# macros (exists, all, filter) are not evaluated here.
_CEL_SKIP = ("oldSelf", ".exists(", ".all(", ".filter(", ".size()")


def _cel_to_python(rule: str) -> str:
    import re

    expr = re.sub(r"has\(self((?:\.\w+)+)\)", lambda m: f"_has(self, {m[1][1:]!r})", rule)
    expr = re.sub(r"self((?:\.\w+)+)\.matches\(", lambda m: f"_matches(_get(self, {m[1][1:]!r}), ", expr)
    expr = re.sub(r"\bself\.matches\(", "_matches(self, ", expr)
    expr = re.sub(r"self((?:\.\w+)+)", lambda m: f"_get(self, {m[1][1:]!r})", expr)
    expr = expr.replace("&&", " and ").replace("||", " or ").replace("size(", "len(")
    expr = re.sub(r"!(?!=)", " not ", expr)
    return expr.replace("true", "True").replace("false", "False")


def _cel(rule: str, value: Any) -> bool:
    import re

    def get(obj, path):
        for key in path.split("."):
            obj = obj[key]
        return obj

    def has(obj, path):
        try:
            get(obj, path)
            return True
        except (KeyError, TypeError):
            return False

    env = {"self": value, "_get": get, "_has": has, "_matches": lambda v, p: re.search(p, v) is not None, "len": len}
    try:
        return bool(eval(_cel_to_python(rule), {"__builtins__": {}}, env))  # noqa: S307 - rules from CRD files
    except (KeyError, TypeError):
        return False  # a field the rule needs is absent: the rule fails, as CEL's "no such key" does


def cel_errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    errors = []
    for check in schema.get("x-kubernetes-validations") or []:
        rule = " ".join(check["rule"].split())
        if not any(skip in rule for skip in _CEL_SKIP) and not _cel(rule, value):
            errors.append(f"{path or '<root>'}: Invalid value: {check.get('message') or rule}")
    if isinstance(value, dict):
        props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            if key in props:
                errors += cel_errors(item, props[key], sub)
            elif isinstance(extra, dict):
                errors += cel_errors(item, extra, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += cel_errors(item, schema["items"], f"{path}[{i}]")
    return errors


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
    errors += cel_errors(obj, schema)
    if not obj.get("metadata", {}).get("name"):
        errors.append("metadata.name: required")
    return errors


def unknown_fields(crd_dir: str | Path, obj: dict[str, Any]) -> list[str]:
    """The fields of `obj` its CRD's structural schema does not know (strict field validation refuses them)."""
    return _unknown_fields(obj, _crds(str(crd_dir))[(obj["apiVersion"], obj["kind"])], "")
