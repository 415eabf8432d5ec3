rule evaluate:
    input:
        model="runs/{run}/model",
        shards="data/shards",
        tokenizer="data/tokenizer",
        stamp=stamp("evaluate"),
    output:
        "results/eval/{run}/lineage.json",
        "results/eval/{run}/metrics.json",
        "results/eval/{run}/t_curve.tsv",
    params:
        cfg=params_of("evaluate"),
    shell:
        "ltm evaluate --params {PARAMS} --run {wildcards.run} --model {input.model} --shards {input.shards}"
        " --tokenizer {input.tokenizer} --out results/eval/{wildcards.run}"
