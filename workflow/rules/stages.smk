# One rule per stage of the pipeline table (ltm/pipeline.py): its command, inputs (the files it reads and
# the source files it runs), outputs and params come from there, as dvc.yaml's do, so the two cannot
# drift. Per-run stages have the wildcard {run}. Each rule also takes its params stamp (ltm.sync): a
# params change reruns it even where DVC made the outputs.
for stage in pipeline.STAGES:

    rule:
        name:
            stage.name
        input:
            unpack(inputs_of(stage.name)),
        output:
            *outputs_of(stage.name),
        params:
            cfg=params_fn(stage.name),
            command=command_fn(stage.name),
        shell:  # evaluated when the job runs, after the loop: the command comes in through params
            "{params.command}"
