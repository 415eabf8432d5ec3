rule corpus:
    input:
        "inputs",
    output:
        directory("data/corpus"),
    params:
        cfg=params_of("corpus"),
    shell:
        "ltm corpus --params {PARAMS} --out {output}"


rule tokenizer:
    input:
        "data/corpus",
    output:
        directory("data/tokenizer"),
    params:
        cfg=params_of("tokenizer"),
    shell:
        "ltm tokenizer --params {PARAMS} --corpus {input} --out {output}"


rule shards:
    input:
        corpus="data/corpus",
        tokenizer="data/tokenizer",
    output:
        directory("data/shards"),
    params:
        cfg=params_of("shards"),
    shell:
        "ltm shards --params {PARAMS} --corpus {input.corpus} --tokenizer {input.tokenizer} --out {output}"
