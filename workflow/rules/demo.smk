# The synthetic-corpus demonstration: it builds its own data inside the job, so it has no input.
rule demo:
    output:
        "results/demo/lineage.json",
        "results/demo/metrics.json",
    params:
        cfg=params_of("demo"),
    shell:
        "ltm demo --params {PARAMS} --out results/demo"
