"""Lineage records: a small JSON beside every artifact saying exactly what made it.

Each record names the stage, the command line, the params subset and its hash, the content hash of
every input (and where that input's own record lives) and package versions; the git commit, the times and
the CPU sit beside it in lineage.run.json (they differ on every rerun or machine; the record must not).
`walk` follows the inputs back to the raw corpus, checking that each input still has the content it
had when the artifact was made.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterator

from ltm.config import params_hash
from ltm.errors import LtmError
from ltm.io import read_json, sha256_file, write_json

RECORD_NAME = "lineage.json"
PACKAGES = ("ltm", "torch", "numpy", "pyarrow", "tokenizers", "scipy", "dvc", "snakemake")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def content_hash(path: str | Path) -> str:
    """sha256 of a file; for a directory, of its manifest.json if it has one, else of all its files."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise LtmError(f"lineage input does not exist: {path}")
    if (path / "manifest.json").is_file():
        return sha256_file(path / "manifest.json")
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*")
                    if p.is_file() and p.name != RECORD_NAME and not p.name.endswith(".run.json")):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def run_path(record: Path) -> Path:
    """The sibling holding a record's times and git state (lineage.json -> lineage.run.json).

    They change on every rerun, so they live apart from the record: the record sits inside DVC-tracked
    outputs and must hash the same when the same inputs give the same artifact (.dvcignore skips
    *.run.json)."""
    return record.with_name(record.name.removesuffix(".json") + ".run.json")


def record_path(artifact: str | Path) -> Path:
    """Where the lineage record of an artifact (a directory, or a file inside one) lives."""
    artifact = Path(artifact)
    if artifact.is_dir():
        return artifact / RECORD_NAME
    if artifact.name == RECORD_NAME:
        return artifact
    sibling = artifact.with_name(artifact.name + ".lineage.json")
    return sibling if sibling.exists() else artifact.parent / RECORD_NAME


def git_state(cwd: Path | None = None) -> dict:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    # dvc.lock is rewritten by DVC itself between the stages of one `dvc repro`: not a local edit
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)dvc.lock")
    return {"commit": commit or None, "dirty": bool(changed)}


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def machine() -> dict:
    """The CPU a stage ran on: torch picks its float kernels by the CPU's vector instructions, so trained
    weights can differ in the last bits between CPU kinds (the run file records it; the record must not)."""
    model = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text(errors="replace").splitlines()
                      if line.startswith("model name")), model)
    torch = sys.modules.get("torch")  # only where the stage uses it: importing it here costs ~1.8 s
    capability = torch.backends.cpu.get_cpu_capability() if torch is not None else None
    return {"arch": platform.machine(), "cpu": model, "torch_cpu_capability": capability}


def write_record(artifact: str | Path, *, stage: str, params: dict, inputs: dict[str, str | Path],
                 started: str, extra: dict | None = None, record: Path | None = None,
                 files: list[str | Path] | None = None) -> dict:
    """Write the lineage record of `artifact`; `inputs` maps a role (e.g. "corpus") to a path.

    files: what the stage wrote beside the record that later stages read (default: the artifact, if it
    is a file); their sha256 go into the record, so `check_file` can refuse a file altered since."""
    artifact = Path(artifact)
    path = record or record_path(artifact)
    if files is None:
        files = [artifact] if artifact.is_file() else []
    rec = {
        "artifact": artifact.as_posix(),
        "stage": stage,
        "command": " ".join(["ltm", *sys.argv[1:]]) if Path(sys.argv[0]).name == "ltm" else " ".join(sys.argv),
        "params": params,
        "params_hash": params_hash(params),
        "inputs": {
            role: {"path": Path(p).as_posix(), "sha256": content_hash(p),
                   "lineage": record_path(p).as_posix() if record_path(p).is_file() else None}
            for role, p in inputs.items()
        },
        "output_sha256": content_hash(artifact) if artifact.exists() else None,
        "files": {Path(f).resolve().relative_to(path.parent.resolve()).as_posix(): sha256_file(f) for f in files},
        "packages": package_versions(),
        **(extra or {}),
    }
    when = {"git": git_state(), "started": started, "finished": now(), "machine": machine()}
    write_json(path, rec)
    write_json(run_path(path), when)
    return {**rec, **when}


def read_record(artifact: str | Path) -> dict:
    path = record_path(artifact)
    if not path.is_file():
        raise LtmError(f"no lineage record for {artifact} (looked for {path})")
    rec = read_json(path)
    when = run_path(path)
    return {**rec, **(read_json(when) if when.is_file() else {"git": {}, "finished": None})}


def check_file(path: str | Path) -> None:
    """Refuse (one-line LtmError) a file altered since its stage wrote it: its sha256 differs from the one in
    its lineage record. A file its record does not list (or with no record) is not checked."""
    path = Path(path)
    rec_path = record_path(path)
    if not rec_path.is_file():
        return
    try:
        rec = read_json(rec_path)
    except (ValueError, UnicodeDecodeError):
        raise LtmError(f"unreadable lineage record {rec_path}: not valid JSON") from None
    expected = (rec.get("files") or {}).get(path.resolve().relative_to(rec_path.parent.resolve()).as_posix())
    if expected is not None and sha256_file(path) != expected:
        raise LtmError(f"{path} was changed after stage {rec.get('stage', '?')} wrote it (sha256 differs from "
                       f"{rec_path}); rerun that stage ({rec.get('command', '?')}) or restore the file (dvc checkout)")


def walk(artifact: str | Path, depth: int = 0, seen: set | None = None) -> Iterator[tuple[int, dict, list[str]]]:
    """Yield (depth, record, problems) from `artifact` back to its raw inputs, depth first."""
    seen = set() if seen is None else seen
    rec = read_record(artifact)
    problems = []
    base = record_path(artifact).parent
    for name, sha in (rec.get("files") or {}).items():
        if not (base / name).is_file():
            problems.append(f"output {base / name} no longer exists")
        elif sha256_file(base / name) != sha:
            problems.append(f"output {base / name} changed since its stage wrote it")
    for role, inp in rec["inputs"].items():
        path = Path(inp["path"])
        if not path.exists():
            problems.append(f"input {role} ({path}) no longer exists")
        elif content_hash(path) != inp["sha256"]:
            problems.append(f"input {role} ({path}) changed since this artifact was made")
    yield depth, rec, problems
    for inp in rec["inputs"].values():
        if inp.get("lineage") and Path(inp["lineage"]).is_file() and inp["lineage"] not in seen:
            seen.add(inp["lineage"])
            yield from walk(inp["lineage"], depth + 1, seen)


def format_chain(artifact: str | Path) -> str:
    lines = []
    for depth, rec, problems in walk(artifact):
        pad = "  " * depth
        git = rec["git"]["commit"][:10] if rec["git"].get("commit") else "no-git"
        dirty = "+dirty" if rec["git"].get("dirty") else ""
        lines.append(f"{pad}{rec['artifact']}  stage={rec['stage']}  params={rec['params_hash']}  "
                     f"git={git}{dirty}  at={rec['finished']}")
        lines.append(f"{pad}  command: {rec['command']}")
        for role, inp in rec["inputs"].items():
            lines.append(f"{pad}  <- {role}: {inp['path']}  sha256={inp['sha256'][:12]}")
        for src in rec.get("sources", []):
            lines.append(f"{pad}  <- source: {src['path']}  sha256={src['sha256'][:12]}")
        lines.extend(f"{pad}  !! {p}" for p in problems)
    return "\n".join(lines)
