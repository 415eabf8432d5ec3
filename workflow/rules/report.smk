rule report:
    input:
        expand("runs/{run}/metrics.json", run=RUNS),
        expand("runs/{run}/train_log.tsv", run=RUNS),
        expand("results/eval/{run}/metrics.json", run=RUNS),
        expand("results/fewshot/{run}/metrics.json", run=config["runs"]),
        expand("results/generation/{run}/metrics.json", run=config["runs"]),
        "results/scaling/fit.json",
        "results/demo/metrics.json",
        stamp=stamp("report"),
    output:
        "reports/report.md",
        directory("reports/figures"),
        "reports/inputs.json",
        "reports/lineage.json",
        "reports/metrics.json",
    params:
        cfg=params_of("report"),
    shell:
        "ltm report --params {PARAMS} --runs runs --eval results/eval --scaling results/scaling --out reports"
