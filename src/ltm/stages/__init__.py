"""Pipeline stages: each loads params, calls the library, and writes its artifact's lineage.

`stage_params` says which params sections a stage reads. dvc.yaml declares exactly their leaf keys,
the Snakemake rules pass them as `params:`, and lineage records hash them: one definition, so
"which change reruns what" cannot drift between the orchestrators.
"""
from __future__ import annotations

STATIC_PARAMS: dict[str, list[str]] = {
    "corpus": ["data.corpus"],
    "tokenizer": ["data.tokenizer"],
    "shards": ["data.shards"],
    "evaluate": ["eval"],
    "scaling": ["fit"],
    "fewshot": ["fewshot"],
    "generation": ["generation"],
    # what the report labels: every run and grid point, the data it describes, eval and fit settings
    "report": ["runs", "sweep", "models", "data.corpus.source", "data.tokenizer.kind", "data.tokenizer.vocab_size",
               "data.shards.seq_len", "eval", "fit"],
}


def stage_params(stage: str, params: dict, run: str | None = None) -> list[str]:
    """Dotted params sections that decide the result of `stage` (for `run`, where it has one)."""
    if stage == "train":
        from ltm.runs import run_entry

        model = run_entry(params, run)["model"]
        if run in params["runs"]:  # one DVC foreach serves every family: it declares both processes
            return [f"runs.{run}", f"models.{model}", "diffusion", "posterior", "train"]
        # a sweep point's own values are in its name (and so in its command line), not in params
        process = "diffusion" if params["models"][model]["family"] == "diffusion" else "posterior"
        return [f"models.{model}", process, "train"]
    if stage == "demo":  # the synthetic corpus built from scratch, its presets trained and scored
        return (["demo", "data.corpus.synthetic", "data.corpus.val_fraction", "data.corpus.seed", "data.tokenizer",
                 "data.shards"] + [f"models.{m}" for m in params["demo"]["models"]] + ["posterior", "train", "eval"])
    return STATIC_PARAMS[stage]


def leaf_keys(params: dict, sections: list[str]) -> list[str]:
    """All dotted leaf keys below the given dotted sections (lists count as leaves)."""
    out = []

    def visit(node, prefix):
        if isinstance(node, dict) and node:
            for key, value in node.items():
                visit(value, f"{prefix}.{key}")
        else:
            out.append(prefix)

    for section in sections:
        node = params
        for part in section.split("."):
            node = node[part]
        visit(node, section)
    return out
