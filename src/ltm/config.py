"""Load and validate params.yaml; hash the parts of it a result depends on.

The same JSON schema (workflow/schemas/params.schema.yaml) is used here and by the Snakefile, so a
bad key fails identically whichever orchestrator (or bare CLI call) reads it. Hardware knobs live
under `runtime:` and may be overridden from the environment; they never enter a params hash.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import MISSING, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

import jsonschema
import yaml

from ltm.errors import LtmError
from ltm.families import family

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.yaml"
DEFAULT_PARAMS = "params.yaml"

def _flag(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


# Environment overrides for hardware-only keys: moving hardware must not invalidate results.
RUNTIME_ENV = {
    "device": ("LTM_DEVICE", str),
    "threads": ("LTM_THREADS", int),
    "micro_batch": ("LTM_MICRO_BATCH", int),
    "compile": ("LTM_COMPILE", _flag),
    "precision": ("LTM_PRECISION", str),
    "fused_loss": ("LTM_FUSED_LOSS", _flag),
}


@lru_cache(maxsize=1)
def load_schema() -> dict:
    if not SCHEMA_PATH.is_file():
        raise LtmError(f"params schema not found at {SCHEMA_PATH}")
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _describe(error: jsonschema.ValidationError, source: str) -> str:
    """One line naming the offending key, whatever kind of schema violation it is."""
    where = _key_path(error)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        prefix = "" if where == "<top level>" else where + "."
        keys = ", ".join(prefix + k for k in extra)
        return f"{source}: unknown key {keys}"
    if error.validator == "type" and isinstance(error.validator_value, str):
        kind = TYPE_WORDS.get(error.validator_value, error.validator_value)
        return f"{source}: {where} must be {kind}, got {error.instance!r}"
    return f"{source}: {where}: {error.message}"


TYPE_WORDS = {"array": "a list", "object": "a mapping", "integer": "an integer", "number": "a number",
              "string": "a string", "boolean": "true or false"}


def typed(cls: type, section: dict, **renamed: str):
    """A frozen dataclass built from one validated params section (lists become tuples); `renamed`
    maps a field to the params key that holds it. Every field must be present, except those with a default:
    they stand for a key the schema makes optional, whose absence means "no override" (demo:)."""
    values = {}
    for f in fields(cls):
        key = renamed.get(f.name, f.name)
        if key not in section:
            if f.default is MISSING and f.default_factory is MISSING:
                raise LtmError(f"params section for {cls.__name__} has no key {key!r}")
            continue
        value = section[key]
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


class FromParams:
    """Base of a frozen settings dataclass built from one validated params section: `X.from_params(section)`."""

    @classmethod
    def from_params(cls, section: dict) -> Self:
        return typed(cls, section)


def non_finite_key(node: Any, prefix: str = "") -> str | None:
    """The dotted key of the first NaN or infinite number in params (the schema's bounds let them pass)."""
    if isinstance(node, float) and not math.isfinite(node):
        return prefix or "<top level>"
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found = non_finite_key(value, f"{prefix}.{key}" if prefix else str(key))
        if found:
            return found
    return None


def validate(params: Any, source: str = DEFAULT_PARAMS) -> None:
    validator = jsonschema.validators.validator_for(load_schema())(load_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        # Prefer the deepest, most specific error: it names the leaf key.
        error = jsonschema.exceptions.best_match(errors)
        raise LtmError(_describe(error, source))
    bad = non_finite_key(params)
    if bad:
        raise LtmError(f"{source}: {bad}: must be a finite number, not NaN or infinity")
    check_cross_references(params, source)


def check_cross_references(params: dict, source: str) -> None:
    """Constraints a JSON schema cannot express (between keys and sections): the one place for them."""
    for where, post in (("posterior", params["posterior"]),
                        ("demo.posterior", {**params["posterior"], **params["demo"].get("posterior", {})})):
        if post["lr_min"] > post["lr_max"]:
            raise LtmError(f"{source}: {where}: lr_min ({post['lr_min']}) must not exceed lr_max ({post['lr_max']})")
    if params["train"]["min_lr"] > params["train"]["lr"]:
        raise LtmError(f"{source}: train: min_lr ({params['train']['min_lr']}) must not exceed lr ({params['train']['lr']})")
    models = params.get("models", {})
    for name, run in params.get("runs", {}).items():
        if run["model"] not in models:
            raise LtmError(f"{source}: runs.{name}.model: unknown model preset {run['model']!r}")
    judge = params.get("generation", {}).get("judge")
    if judge is not None and judge not in params.get("runs", {}):
        raise LtmError(f"{source}: generation.judge: {judge!r} is not a named run under runs:")
    if judge is not None and not family(models[params["runs"][judge]["model"]]["family"]).exact_likelihood:
        raise LtmError(f"{source}: generation.judge: {judge!r} is not an AR run (it must score tokens exactly)")
    for name, grid in params.get("sweep", {}).items():
        for model in grid["models"]:
            if model not in models:
                raise LtmError(f"{source}: sweep.{name}.models: unknown model preset {model!r}")
            if models[model]["family"] != name:
                raise LtmError(f"{source}: sweep.{name}.models: {model!r} is a {models[model]['family']} preset")


def load_params(path: str | os.PathLike = DEFAULT_PARAMS, env: dict | None = None) -> dict:
    """Read, validate and return params; runtime keys get their environment overrides applied."""
    path = Path(path)
    if not path.is_file():
        raise LtmError(f"params file not found: {path}")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise LtmError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" (line {line + 1})" if line is not None else ""
        raise LtmError(f"{path}: not valid YAML{at}") from None
    validate(params, str(path))
    params["runtime"] = runtime_settings(params["runtime"], os.environ if env is None else env)
    return params


def runtime_settings(runtime: dict, env: dict) -> dict:
    """runtime: with LTM_* overrides applied and checked against the schema's runtime section (the file's
    own values were checked with the rest of params); an error names the variable it came from."""
    runtime, given = dict(runtime), {}
    for key, (var, cast) in RUNTIME_ENV.items():
        if env.get(var, "") != "":
            given[key] = f"environment variable {var}={env[var]!r}"
            try:
                runtime[key] = cast(env[var])
            except ValueError:
                raise LtmError(f"{given[key]} is not a valid runtime.{key}") from None
    error = _section_errors("runtime", runtime)
    if error is not None:
        key = error.absolute_path[1] if len(error.absolute_path) > 1 else None
        raise LtmError(_describe(error, given.get(key, DEFAULT_PARAMS)))
    return runtime


def _section_errors(name: str, values: dict, keys: tuple[str, ...] | None = None) -> jsonschema.ValidationError | None:
    """The schema's most specific complaint about one section (only `keys` of it, when given), or None."""
    root = load_schema()
    part = root["properties"][name]
    if keys is not None:
        part = {"type": "object", "properties": {k: part["properties"][k] for k in keys}}
    schema = {"$defs": root["$defs"], "type": "object", "properties": {name: part}}
    return jsonschema.exceptions.best_match(jsonschema.validators.validator_for(root)(schema).iter_errors({name: values}))


def section_error(name: str, values: dict, keys: tuple[str, ...] | None = None) -> str | None:
    """One section checked on its own (the scaling fit's keys, given to it without the rest of params):
    'section.key: message', or None."""
    error = _section_errors(name, values, keys)
    if error is not None:
        return f"{_key_path(error)}: {error.message}"
    bad = non_finite_key(values)
    return None if bad is None else f"{name}.{bad}: must be a finite number, not NaN or infinity"


def subset(params: dict, keys: list[str]) -> dict:
    """The named dotted keys of params, e.g. ["data.corpus", "models.ltm-tiny"]."""
    out: dict = {}
    for dotted in keys:
        node: Any = params
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise LtmError(f"params has no key {dotted}")
            node = node[part]
        out[dotted] = copy.deepcopy(node)
    return out


def params_hash(values: Any) -> str:
    """Stable hash of a JSON-able value: key order and YAML formatting do not matter."""
    if isinstance(values, dict) and "runtime" in values:
        raise ValueError("runtime settings never enter a params hash")
    blob = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
