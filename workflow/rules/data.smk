rule corpus:
    input:
        "inputs",
    output:
        directory("data/corpus"),
    params:
        **stage_params("corpus"),
    shell:
        "ltm corpus --params {PARAMS} --out {output}"


rule tokenizer:
    input:
        "data/corpus",
    output:
        directory("data/tokenizer"),
    params:
        **stage_params("tokenizer"),
    shell:
        "ltm tokenizer --params {PARAMS} --corpus {input} --out {output}"


rule shards:
    input:
        corpus="data/corpus",
        tokenizer="data/tokenizer",
    output:
        directory("data/shards"),
    params:
        **stage_params("shards"),
    shell:
        "ltm shards --params {PARAMS} --corpus {input.corpus} --tokenizer {input.tokenizer} --out {output}"
