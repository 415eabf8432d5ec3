# Few-shot reasoning for the named runs of params `runs:` (not the sweep points).
rule fewshot:
    input:
        model="runs/{run}/model",
        tokenizer="data/tokenizer",
        stamp=stamp("fewshot"),
    output:
        "results/fewshot/{run}/lineage.json",
        "results/fewshot/{run}/metrics.json",
        "results/fewshot/{run}/samples.json",
    params:
        cfg=params_of("fewshot"),
    shell:
        "ltm fewshot --params {PARAMS} --run {wildcards.run} --model {input.model} --tokenizer {input.tokenizer}"
        " --out results/fewshot/{wildcards.run}"
