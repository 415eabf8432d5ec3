rule evaluate:
    input:
        model="runs/{run}/model",
        shards="data/shards",
        tokenizer="data/tokenizer",
    output:
        "runs/{run}/eval/lineage.json",
        "runs/{run}/eval/metrics.json",
        "runs/{run}/eval/t_curve.tsv",
    params:
        cfg=params_of("evaluate"),
    shell:
        "ltm evaluate --params {PARAMS} --run {wildcards.run} --model {input.model} --shards {input.shards}"
        " --tokenizer {input.tokenizer} --out runs/{wildcards.run}/eval"
