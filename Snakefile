# The only Snakemake entry point. params.yaml is the config and is validated against the same
# schema the `ltm` loader uses; the rules come from the same pipeline table as dvc.yaml (ltm/pipeline.py).
from snakemake.utils import validate

configfile: "params.yaml"
validate(config, "workflow/schemas/params.schema.yaml", set_default=False)
from ltm.config import non_finite_key  # checks the schema cannot express, as the ltm loader does
if non_finite_key(config):
    raise ValueError(f"params.yaml: {non_finite_key(config)}: must be a finite number, not NaN or infinity")

include: "workflow/rules/common.smk"


rule all:  # every output of every stage (ltm.pipeline.targets)
    input:
        pipeline.targets(config),


include: "workflow/rules/stages.smk"


# Snakemake deletes a job's outputs before it runs and when it fails: keep the previous result of
# every output (hard links, ltm.previous) and put it back, marked out of date, when a job fails.
# After a killed Snakemake run: `ltm restore PATH...`.
onstart:
    from ltm.previous import declared_outputs, keep
    keep(declared_outputs(workflow.rules, RUNS))

onerror:
    from ltm.previous import declared_outputs, restore
    for path in restore(declared_outputs([r for r in workflow.rules if r.input], RUNS)):
        print(f"ltm: restored the previous {path} (out of date; rerun to remake it)")

# What Snakemake made is what DVC would have made: record it in dvc.lock, stage by stage, where the
# lineage records say the outputs are current (ltm.sync), so `dvc status` agrees with this run.
onsuccess:
    import os
    if os.path.isdir(".dvc"):
        from ltm.sync import commit_current_dvc_stages
        for name in commit_current_dvc_stages(config):
            print(f"ltm: dvc.lock now records {name} (made by this Snakemake run)")
