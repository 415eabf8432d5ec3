# Helpers shared by the rules: everything comes from the pipeline table (ltm.pipeline).
from ltm import pipeline
from ltm.config import subset
from ltm.grid import all_runs
from ltm.stage_params import stage_params
from ltm.sync import params_stamp

PARAMS = "params.yaml"
RUNS = list(all_runs(config))  # the named runs, then every sweep grid point

# Every job's params stamp is written (or re-dated) now, before the DAG is built: a stamp first written
# from an input function can be missing from Snakemake's file inventory when a command line names several
# targets (MissingInputException on a fresh tree). The inputs function below then finds it in place.
for _stage, _run in pipeline.jobs(config):
    params_stamp(_stage.name, _run, config)


def params_of(stage, run=None):
    """The params a stage reads, declared as `params:` so that a change reruns the job."""
    return subset(config, stage_params(stage, config, run))


def params_fn(stage):
    return lambda w: params_of(stage, getattr(w, "run", None))


def command_fn(stage):
    """The stage's command line for one job (the table's {run} filled in)."""
    command = pipeline.BY_NAME[stage].command
    judge = config["generation"]["judge"]
    return lambda w: command.format(run=getattr(w, "run", None), judge=judge)


def inputs_of(stage):
    """A rule's named inputs for one job: data, code and the params stamp."""
    spec = pipeline.BY_NAME[stage]

    def inputs(w):
        run = getattr(w, "run", None)
        return {**pipeline.snakemake_inputs(spec, run, config), "stamp": params_stamp(stage, run, config)}

    return inputs


def outputs_of(stage):
    return [directory(o.path) if o.folder else o.path for o in pipeline.BY_NAME[stage].outputs]


wildcard_constraints:
    run="[^/]+",
