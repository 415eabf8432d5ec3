"""Which params decide each stage's result: the sections a stage hashes into its lineage record, that
dvc.yaml declares (by leaf key) and the Snakemake rules pass as `params:`. Part of every stage's code."""
from __future__ import annotations

from ltm.grid import train_sections

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
WHOLE_SECTIONS = ("runs", "models", "sweep")  # declared whole to DVC: their keys differ between entries


def stage_params(stage: str, params: dict, run: str | None = None) -> list[str]:
    """Dotted params sections that decide the result of `stage` (for `run`, where it has one)."""
    if stage == "train":
        return train_sections(params, run)
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


def declared_params(params: dict, sections: list[str]) -> list[str]:
    """What DVC declares for these sections: run, model and sweep entries whole, the rest leaf by leaf."""
    out = []
    for s in sections:
        out += [s] if s.split(".")[0] in WHOLE_SECTIONS else leaf_keys(params, [s])
    return out
