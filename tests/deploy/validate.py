#!/usr/bin/env python3
"""Validates Kubernetes manifests as the API server does with strict field
validation (`kubectl apply --validate=strict`), so that a misspelled field is
an error rather than silently dropped.

    validate.py --kubernetes 1.33.0 --crds DIR [--crds DIR ...] FILE ...

Every document of every FILE is checked: a built-in kind against the OpenAPI
schema of that Kubernetes version (kubernetes-validate's strict schemas); a
custom resource against the openAPIV3Schema of its CustomResourceDefinition,
found by group, version and kind in the CRD files of the --crds directories,
with unknown fields refused wherever the schema neither lists
additionalProperties nor preserves unknown fields, and its metadata against
the built-in ObjectMeta. One line per problem, `FILE:DOC: KIND NAME: PATH:
MESSAGE`; exit status 1 if there is any, 2 if the command is wrong.
"""
import argparse
import copy
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml


def strict(schema):
    """`schema` with additionalProperties false on every object that lists
    its properties and does not say otherwise (in place)."""
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for sub in schema.get(key, {}).values():
                strict(sub)
        for key in ("items", "additionalProperties", "not"):
            if isinstance(schema.get(key), dict):
                strict(schema[key])
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in schema.get(key, []):
                strict(sub)
    return schema


def custom_resources(dirs):
    """(apiVersion, kind) -> the strict schema of that served CRD version."""
    found = {}
    for d in dirs:
        for path in sorted(pathlib.Path(d).glob("*.yaml")):
            for crd in yaml.safe_load_all(path.read_text()):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for v in spec["versions"]:
                    if not v.get("served", True):
                        continue
                    schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
                    key = (f"{spec['group']}/{v['name']}", spec["names"]["kind"])
                    found[key] = strict(schema)
    return found


def where(error):
    return ".".join(str(p) for p in error.absolute_path) or "(the document)"


def check(doc, version, crds):
    """The problems of one document, as (path, message)."""
    if not isinstance(doc, dict):
        return [("(the document)", "is not a mapping")]
    key = (doc.get("apiVersion"), doc.get("kind"))
    schema = crds.get(key)
    if schema is None:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            return []
        except kubernetes_validate.SchemaNotFoundError:
            return [
                (
                    "apiVersion/kind",
                    f"no schema for {key[0]} {key[1]}: not a built-in kind of Kubernetes "
                    f"{version}, and no CRD given defines it",
                )
            ]
        except jsonschema.ValidationError as e:
            return [(where(e), e.message)]
    problems = [
        (where(e), e.message)
        for e in jsonschema.Draft7Validator(schema).iter_errors(doc)
    ]
    # The CRD's schema leaves metadata open; the API server checks it as ObjectMeta.
    meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata", {})}
    try:
        kubernetes_validate.validate(meta, version, strict=True)
    except jsonschema.ValidationError as e:
        problems.append((where(e), e.message))
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubernetes", required=True, help="Kubernetes version, e.g. 1.33.0")
    ap.add_argument("--crds", action="append", default=[], help="a directory of CRD files")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    crds = custom_resources(args.crds)
    bad = 0
    for f in args.files:
        docs = list(yaml.safe_load_all(pathlib.Path(f).read_text()))
        for i, doc in enumerate(docs, 1):
            if doc is None:
                continue
            name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, dict) else "?"
            kind = doc.get("kind", "?") if isinstance(doc, dict) else "?"
            for path, message in check(doc, args.kubernetes, crds):
                print(f"{f}:{i}: {kind} {name}: {path}: {message}")
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
