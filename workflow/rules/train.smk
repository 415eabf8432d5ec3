# One training job per entry of params `runs:`. The checkpoint folder is deliberately not an
# output: Snakemake would delete it before rerunning, and resume needs it to survive.
rule train:
    input:
        shards="data/shards",
        stamp=stamp("train"),
    output:
        directory("runs/{run}/model"),
        "runs/{run}/metrics.json",
        "runs/{run}/train_log.tsv",
        "runs/{run}/lineage.json",
    params:
        cfg=lambda w: params_of("train", w.run),
    shell:
        "ltm train --params {PARAMS} --run {wildcards.run} --shards {input.shards} --out runs/{wildcards.run}"
