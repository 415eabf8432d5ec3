rule corpus:
    input:
        inputs="inputs",
        stamp=stamp("corpus"),
    output:
        directory("data/corpus"),
    params:
        cfg=params_of("corpus"),
    shell:
        "ltm corpus --params {PARAMS} --out {output}"


rule tokenizer:
    input:
        corpus="data/corpus",
        stamp=stamp("tokenizer"),
    output:
        directory("data/tokenizer"),
    params:
        cfg=params_of("tokenizer"),
    shell:
        "ltm tokenizer --params {PARAMS} --corpus {input.corpus} --out {output}"


rule shards:
    input:
        corpus="data/corpus",
        tokenizer="data/tokenizer",
        stamp=stamp("shards"),
    output:
        directory("data/shards"),
    params:
        cfg=params_of("shards"),
    shell:
        "ltm shards --params {PARAMS} --corpus {input.corpus} --tokenizer {input.tokenizer} --out {output}"
