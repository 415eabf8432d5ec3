"""The pipeline table (ltm.pipeline): dvc.yaml is generated from it, and every stage depends on the source
files it runs, so a code change reruns exactly the stages whose code imports the edited module."""
from __future__ import annotations

import json
import re
import subprocess
import sys

from ltm.pipeline import STAGES, code_files

from test_pipeline import FAST_RUNS, ROOT, project_copy, sh


def test_committed_dvc_yaml_is_the_generated_one():
    run = subprocess.run([sys.executable, "-m", "ltm.cli", "pipeline", "--check"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def users(module_file: str) -> set[str]:
    return {s.name for s in STAGES if f"src/ltm/{module_file}" in code_files(s)}


def test_code_files_are_the_import_closure_of_each_stage_module():
    train = code_files("train")
    assert "src/ltm/trainer.py" in train  # imported inside a function: still the stage's code
    assert {"src/ltm/model.py", "src/ltm/posterior.py", "src/ltm/__init__.py"} <= set(train)
    assert not {"src/ltm/model.py", "src/ltm/trainer.py", "src/ltm/evaluate.py"} & set(code_files("corpus"))
    assert users("fewshot.py") == {"fewshot"}
    assert users("report/matched.py") == {"report"}
    assert users("data/tokenizer.py") >= {"tokenizer", "shards"} and "corpus" not in users("data/tokenizer.py")
    assert users("trainer.py") == {"train", "demo"}
    assert users("cli.py") == set() and users("pipeline.py") == set()  # dispatch and the table are not a result


def test_editing_a_module_reruns_exactly_the_stages_that_use_it(tmp_path):
    ws = project_copy(tmp_path, FAST_RUNS)
    sh(ws, "dvc", "repro", "shards")
    targets = ["corpus", "tokenizer", "shards"]

    def stale() -> tuple[set[str], set[str]]:
        dvc = set(json.loads(sh(ws, "dvc", "status", "--json", *targets)))
        planned = sh(ws, "snakemake", "-n", "--cores", "1", "data/shards")
        smk = {name for name in targets if f"rule {name}:" in planned}
        return dvc, smk

    assert stale() == (set(), set())
    module = ws / "src/ltm/data/tokenizer.py"
    module.write_text(module.read_text() + "\n# an edit\n")
    assert stale() == ({"tokenizer", "shards"}, {"tokenizer", "shards"})
    sh(ws, "dvc", "repro", "shards")
    assert stale() == (set(), set())
    module = ws / "src/ltm/data/shards.py"
    module.write_text(module.read_text() + "\n# an edit\n")
    assert stale() == ({"shards"}, {"shards"})


def test_imports_point_one_way_with_no_cycle():
    """cli -> stages -> library: no module imports the CLI, no stage imports another, and the package's
    import graph (function-level imports included) has no cycle."""
    from ltm.pipeline import PACKAGE_DIR, _imports, _module_file

    graph = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = ["ltm", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[name] = {m for m in _imports(path, name) if _module_file(m) and m not in (name, "ltm")}
    for name, deps in graph.items():
        assert "ltm.cli" not in deps, name
        if name.startswith("ltm.stages."):
            assert not any(d.startswith("ltm.stages.") for d in deps), name
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name, path):
        state[name] = 1
        for dep in graph.get(name, ()):
            assert state.get(dep) != 1, " -> ".join([*path, dep])
            if dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_the_readme_layout_names_every_module():
    """The README's layout section describes the tree as it is: every module of src/ltm is named there."""
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    words = set(re.findall(r"[A-Za-z_]+", layout))
    modules = {p.stem for p in (ROOT / "src/ltm").rglob("*.py") if p.stem != "__init__"}
    packages = {p.parent.name for p in (ROOT / "src/ltm").rglob("__init__.py")} - {"ltm"}
    assert not (modules | packages) - words, sorted((modules | packages) - words)
