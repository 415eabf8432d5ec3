"""The previous result of every Snakemake output, kept where Snakemake does not delete it.

Snakemake removes a job's outputs before the job runs and again when it fails, so a failed rerun would
lose the last good result (DVC does not: every dvc.yaml output is `persist`). The Snakefile's onstart
hook therefore hard-links each existing declared output into `.snakemake/ltm-previous/` (no copy: the
`ltm` stages replace files by rename, never in place, so a link keeps the old bytes), and its onerror
hook puts back every output that is then missing. `ltm restore PATH...` does the same by hand, e.g.
after the Snakemake process itself was killed.

A restored output is the *previous* result, not one made with the current params. It gets the
modification time 1970-01-01 so that Snakemake, which compares it with its inputs, still sees it as
out of date and reruns its job next time; DVC compares content and is not affected.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Iterable

STORE = Path(".snakemake") / "ltm-previous"
STALE_TIME = 1  # seconds after the epoch: older than any input


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a filesystem without hard links: copy instead
        shutil.copy2(src, dst)


def _link_tree(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=_link, symlinks=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        _link(str(src), str(dst))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _stored(path: Path, store: Path) -> Path:
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{path}: outputs are paths inside the project")
    return store / path


def keep(paths: Iterable[str | Path], store: Path = STORE) -> list[Path]:
    """Link every existing path into the store, replacing its older copy; a path that is missing
    keeps the copy it had (it may be the only one left). Returns the paths kept."""
    kept = []
    for path in map(Path, paths):
        dest = _stored(path, store)
        if not path.exists():
            continue
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        _remove(tmp)
        _link_tree(path, tmp)
        _remove(dest)
        tmp.rename(dest)
        kept.append(path)
    return kept


def _mark_stale(path: Path) -> None:
    items = [path] if not path.is_dir() else [*path.rglob("*"), path]
    for item in items:
        os.utime(item, (STALE_TIME, STALE_TIME), follow_symlinks=False)


def restore(paths: Iterable[str | Path], store: Path = STORE) -> list[Path]:
    """Put back every missing path that the store holds, marked out of date; returns those restored."""
    restored = []
    for path in map(Path, paths):
        src = _stored(path, store)
        if path.exists() or not src.exists():
            continue
        tmp = path.with_name(f".{path.name}.{os.getpid()}.restore.tmp")
        _remove(tmp)
        _link_tree(src, tmp)  # makes the parent folders
        tmp.rename(path)
        _mark_stale(path)
        restored.append(path)
    return restored


def declared_outputs(rules, runs: Iterable[str]) -> list[str]:
    """Every output path of Snakemake `rules`, the `{run}` wildcard expanded over `runs`."""
    runs, out = list(runs), []
    wildcard = re.compile(r"\{run(,[^}]*)?\}")  # with its constraint, e.g. {run,[^/]+}
    for rule in rules:
        for pattern in map(str, rule.output):
            out += [wildcard.sub(run, pattern) for run in runs] if wildcard.search(pattern) else [pattern]
    return sorted(set(p for p in out if "{" not in p))
