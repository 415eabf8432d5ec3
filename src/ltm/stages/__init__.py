"""Pipeline stages: each loads params, calls the library, and writes its artifact's lineage.

STAGE_PARAMS says which params sections each stage reads. dvc.yaml declares exactly their leaf
keys, the Snakemake rules pass them as `params:`, and lineage records hash them: one definition, so
"which change reruns what" cannot drift between the orchestrators.
"""
from __future__ import annotations

STAGE_PARAMS: dict[str, list[str]] = {
    "corpus": ["data.corpus"],
    "tokenizer": ["data.tokenizer"],
    "shards": ["data.shards"],
}


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
