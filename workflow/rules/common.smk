# Helpers shared by the rules. PARAMS is the file every `ltm` command reads.
from ltm.config import subset
from ltm.runs import all_runs
from ltm.stages import stage_params
from ltm.sync import params_stamp

PARAMS = "params.yaml"
RUNS = list(all_runs(config))  # the named runs, then every sweep grid point


def params_of(stage, run=None):
    """The params a stage reads, declared as `params:` so that a change reruns the job."""
    return subset(config, stage_params(stage, config, run))


def stamp(stage):
    """The job's params stamp (ltm.sync): a params change reruns the job even where DVC made its outputs."""
    return lambda w: params_stamp(stage, getattr(w, "run", None), config)


wildcard_constraints:
    run="[^/]+",
