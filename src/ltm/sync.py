"""Each orchestrator sees the other's work, through the lineage record every stage writes.

Snakemake decides what to rerun from its own metadata, which a tree built by DVC lacks: a params change
there went unnoticed. DVC decides from dvc.lock, which Snakemake never writes: everything Snakemake
built looked changed to DVC. The lineage record (params hash, input hashes, output file hashes) says
whether an artifact was made from the current params and inputs, whichever tool ran the command:

- `params_stamp`: one small file per Snakemake job holding the hash of the params its stage records,
  taken by the rule as an input. It is dated in 1970 when the job's record already has that hash
  (nothing to do), and touched to now when the record has another one (the job reruns), so Snakemake's
  ordinary "input newer than output" rule sees params changes in any tree.
- `commit_current_dvc_stages`: after a successful Snakemake run, `dvc commit` each DVC stage that DVC
  sees as changed but whose lineage records say it is current, so `dvc status` agrees.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ltm.config import params_hash, subset
from ltm.io import read_json, write_text
from ltm.lineage import walk
from ltm.pipeline import BY_NAME
from ltm.stage_params import stage_params

STAMPS = Path(".snakemake") / "ltm-params"
OLD = 0  # the stamp's mtime when the outputs are current: older than any output


def record_of(stage: str, run: str | None = None) -> Path:
    """Where the stage writes its lineage record, read off its outputs in the pipeline table."""
    outs = BY_NAME[stage].outputs
    path = next((o.path for o in outs if o.path.endswith("/lineage.json")), None)
    path = path or next(f"{o.path}/lineage.json" for o in outs if o.folder)
    return Path(path.format(run=run))


def recorded_params_hash(stage: str, params: dict, run: str | None = None) -> str:
    """The params hash the stage writes into its lineage record when run now."""
    if stage == "train":
        from ltm.runs import resolve_run

        return params_hash(resolve_run(params, run).params)
    return params_hash(subset(params, stage_params(stage, params, run)))


def _recorded_hash(record: Path) -> str | None:
    try:
        return read_json(record).get("params_hash") if record.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None


def params_stamp(stage: str, run: str | None, params: dict) -> str:
    """Path of the job's params stamp, written or re-dated as the module docstring says."""
    want = recorded_params_hash(stage, params, run)
    stamp, record = STAMPS / (stage + (f"@{run}" if run else "") + ".hash"), record_of(stage, run)
    fresh = not stamp.is_file() or stamp.read_text(encoding="utf-8").strip() != want
    if fresh:
        write_text(stamp, want + "\n")
    recorded = _recorded_hash(record)
    if recorded == want:
        if fresh:
            os.utime(stamp, (OLD, OLD))
    elif recorded is not None and stamp.stat().st_mtime <= record.stat().st_mtime:
        os.utime(stamp)  # made with other params: newer than the outputs, so the job reruns
    return stamp.as_posix()


def is_current(stage: str, run: str | None, params: dict) -> bool:
    """The stage's record exists, has the current params hash, and its inputs and output files still
    have the content it recorded (paths relative to the project root, the working directory)."""
    record = record_of(stage, run)
    if _recorded_hash(record) != recorded_params_hash(stage, params, run):
        return False
    _, _, problems = next(walk(record))
    return not problems


def _stage_of(cmd: str) -> tuple[str, str | None]:
    m = re.match(r"ltm (\S+) .*?(?:--run (\S+)|$)", cmd)
    return (m.group(1), m.group(2)) if m else ("", None)


def commit_current_dvc_stages(params: dict) -> list[str]:
    """`dvc commit` every changed DVC stage whose lineage says it is current (run from the project
    root); returns their names."""
    from dvc.repo import Repo

    done = []
    with Repo(".") as repo:
        changed = set(repo.status())  # one pass over the pipeline, not one per stage
        for stage in repo.index.stages:
            kind, run = _stage_of(stage.cmd or "")
            if kind not in BY_NAME or stage.addressing not in changed:
                continue
            if all(Path(str(o.def_path)).exists() for o in stage.outs) and is_current(kind, run, params):
                repo.commit(stage.addressing, force=True)
                done.append(stage.addressing)
    return done
