rule scaling:
    input:
        expand("results/eval/{run}/metrics.json", run=RUNS),
        expand("results/eval/{run}/t_curve.tsv", run=RUNS),
        stamp=stamp("scaling"),
    output:
        "results/scaling/fit.json",
        "results/scaling/lineage.json",
        "results/scaling/records.csv",
        "results/scaling/residuals.csv",
        "results/scaling/summary.txt",
    params:
        cfg=params_of("scaling"),
    shell:
        "ltm scaling --params {PARAMS} --eval results/eval --out results/scaling"
