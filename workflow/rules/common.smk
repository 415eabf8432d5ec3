# Helpers shared by the rules. PARAMS is the file every `ltm` command reads.
from ltm.config import subset
from ltm.runs import all_runs
from ltm.stages import stage_params

PARAMS = "params.yaml"
RUNS = list(all_runs(config))  # the named runs, then every sweep grid point


def params_of(stage, run=None):
    """The params a stage reads, declared as `params:` so that a change reruns the job."""
    return subset(config, stage_params(stage, config, run))


wildcard_constraints:
    run="[^/]+",
