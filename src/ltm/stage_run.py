"""What every stage does around its own work, in one place: read and validate params, pin the CPU
threads, note the start time, refuse a wrong --out before any work, and write the lineage record of
what it made (the params sections that decide it, per ltm.stage_params)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ltm import lineage
from ltm.config import load_params, subset
from ltm.io import check_out_folder
from ltm.runtime import Runtime, configure_threads
from ltm.stage_params import stage_params


@dataclass(frozen=True)
class StageRun:
    name: str
    params: dict
    runtime: Runtime
    threads: int | None
    started: str
    run: str | None = None

    @property
    def settings(self) -> dict:
        """The params this stage's result depends on: what its lineage record holds and hashes."""
        return subset(self.params, stage_params(self.name, self.params, self.run))

    def record(self, artifact: str | Path, inputs: dict[str, str | Path], *, params: dict | None = None,
               **kw) -> dict:
        return lineage.write_record(artifact, stage=self.name, params=self.settings if params is None else params,
                                    inputs=inputs, started=self.started, **kw)


def begin(name: str, params_path: str, *, out: str | Path | None = None, run: str | None = None) -> StageRun:
    """Start stage `name`; `out`: a folder the stage writes files into (checked now, not after the work)."""
    params = load_params(params_path)
    runtime = Runtime.from_params(params["runtime"])
    threads = configure_threads(runtime)
    started = lineage.now()
    if out is not None:
        check_out_folder(Path(out))
    return StageRun(name, params, runtime, threads, started, run)
