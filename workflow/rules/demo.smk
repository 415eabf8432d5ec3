# The synthetic-corpus demonstration: it builds its own data inside the job; its only input is its
# params stamp.
rule demo:
    input:
        stamp=stamp("demo"),
    output:
        "results/demo/lineage.json",
        "results/demo/metrics.json",
    params:
        cfg=params_of("demo"),
    shell:
        "ltm demo --params {PARAMS} --out results/demo"
