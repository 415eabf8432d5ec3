# Generation quality of the named runs, judged by the AR run named in params generation.judge.
rule generation:
    input:
        model="runs/{run}/model",
        judge=f"runs/{config['generation']['judge']}/model",
        shards="data/shards",
        tokenizer="data/tokenizer",
        stamp=stamp("generation"),
    output:
        "results/generation/{run}/lineage.json",
        "results/generation/{run}/metrics.json",
        "results/generation/{run}/samples.json",
    params:
        cfg=params_of("generation"),
    shell:
        "ltm generation --params {PARAMS} --run {wildcards.run} --model {input.model} --judge {input.judge}"
        " --shards {input.shards} --tokenizer {input.tokenizer} --out results/generation/{wildcards.run}"
