"""Bad input, one table: every user mistake ends in exit code 2 with one line `ltm: error: ...` naming
the offending key or file, no traceback, and every earlier artifact byte-identical.

One class per row group (README "Bad input"): invalid params values, unreadable params, runtime
overrides, corrupt artifacts, output paths that are not the stage's, run names that are paths. Each case
prepares a copy of one small workspace (trained tiny LTM and AR, their evaluations), breaks one thing,
runs the CLI in-process and compares every file before and after.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from ltm.cli import main
from ltm.stages.evaluate import evaluate
from ltm.stages.train import train

from conftest import flip_a_digit
from test_train import in_dir, workspace

PARAMS = ["--params", "params.yaml"]
TRAIN = ["train", *PARAMS, "--run", "ltm-tiny", "--shards", "data/shards", "--out", "runs/ltm-tiny"]
EVALUATE = ["evaluate", *PARAMS, "--run", "ltm-tiny", "--model", "runs/ltm-tiny/model", "--shards", "data/shards",
            "--tokenizer", "data/tokenizer", "--out", "results/eval/ltm-tiny"]
SCALING = ["scaling", *PARAMS, "--eval", "results/eval", "--out", "results/scaling"]
REPORT = ["report", *PARAMS, "--runs", "runs", "--eval", "results/eval", "--scaling", "results/scaling"]


@pytest.fixture(scope="module")
def base(tiny_data, tmp_path_factory) -> Path:
    ws = workspace(tiny_data, tmp_path_factory.mktemp("bad") / "ws",
                   {"runs": {"ltm-tiny": {"model": "ltm-tiny", "tokens": 2048},
                             "ar-tiny": {"model": "ar-tiny", "tokens": 2048}}, "sweep": {}})
    (ws / "data").unlink()  # a real copy: the cases corrupt data files too
    shutil.copytree(tiny_data / "data", ws / "data")
    for run in ("ltm-tiny", "ar-tiny"):
        in_dir(ws, train, "params.yaml", run, "data/shards", f"runs/{run}")
        in_dir(ws, evaluate, "params.yaml", run, f"runs/{run}/model", "data/shards", "data/tokenizer",
               f"results/eval/{run}")
    return ws


def set_param(key: str, value):
    def edit(ws: Path) -> None:
        params = yaml.safe_load((ws / "params.yaml").read_text())
        *path, leaf = key.split(".")
        node = params
        for part in path:
            node = node[part]
        node[leaf] = value
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return edit


def write(rel: str, data: bytes | str):
    def edit(ws: Path) -> None:
        path = ws / rel
        if path.is_dir():
            shutil.rmtree(path)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return edit


def env(name: str, value: str):
    return ("env", name, value)


def malicious_pickle(ws: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))
    torch.save({"format": 1, "evil": Evil()}, ws / "evil.pt")


def checkpoint_without_keys(ws: Path) -> None:
    from ltm.checkpoint import FORMAT
    torch.save({"format": FORMAT, "model": {}}, ws / "part.pt")


# (case id, how to break the workspace, argv, text the one-line message must contain)
CASES = [
    # 1. params values the schema cannot express
    ("lr-nan", set_param("train.lr", float("nan")), TRAIN, "train.lr"),
    ("grad-clip-nan", set_param("train.grad_clip", float("nan")), TRAIN, "train.grad_clip"),
    ("inf-in-eval", set_param("eval.samples", float("inf")), EVALUATE, "eval.samples"),
    ("unknown-key", set_param("train.learning_rate", 1e-3), TRAIN, "learning_rate"),
    ("bad-split", set_param("eval.splits", ["nope"]), EVALUATE, "nope"),
    # 2. a params file that cannot be read
    ("params-not-utf8", write("params.yaml", b"train:\n  lr: \xff\xfe\n"), TRAIN, "params.yaml"),
    ("params-not-yaml", write("params.yaml", "train: [unclosed\n"), TRAIN, "params.yaml"),
    ("params-missing", lambda ws: (ws / "params.yaml").unlink(), TRAIN, "params.yaml"),
    # 3. runtime overrides (they bypass the schema)
    ("device-bogus", env("LTM_DEVICE", "bogus"), EVALUATE, "LTM_DEVICE"),
    ("device-cuda-on-cpu", env("LTM_DEVICE", "cuda"), EVALUATE, "cuda"),
    ("threads-negative", env("LTM_THREADS", "-2"), EVALUATE, "LTM_THREADS"),
    # 4. corrupt or altered artifacts
    ("shards-manifest", write("data/shards/manifest.json", '{"splits": '), EVALUATE, "manifest.json"),
    ("model-config-json", write("runs/ltm-tiny/model/config.json", "{not json"), EVALUATE, "config.json"),
    ("weights-flipped", lambda ws: _flip(ws / "runs/ltm-tiny/model/model.pt"), EVALUATE, "model.pt"),
    ("malicious-pickle", malicious_pickle, [*TRAIN, "--resume", "evil.pt"], "evil.pt"),
    ("checkpoint-keys", checkpoint_without_keys, [*TRAIN, "--resume", "part.pt"], "part.pt"),
    ("eval-metrics-json", write("results/eval/ar-tiny/metrics.json", "{"), SCALING, "metrics.json"),
    ("eval-metrics-missing", lambda ws: shutil.rmtree(ws / "results/eval/ar-tiny"), SCALING, "ar-tiny"),
    ("eval-metrics-altered", lambda ws: flip_a_digit(ws / "results/eval/ltm-tiny/metrics.json"), SCALING,
     "changed after stage evaluate"),
    # 5. outputs that are not the stage's to replace
    ("report-into-runs", None, [*REPORT, "--out", "runs"], "runs"),
    ("corpus-into-data", None, ["corpus", *PARAMS, "--out", "data"], "data"),
    ("out-is-a-file", write("taken", "x"), [*EVALUATE[:-1], "taken"], "taken"),
    # 6. run names that are paths
    ("run-name-path", None, ["evaluate", *PARAMS, "--run", "../../x", "--model", "runs/ltm-tiny/model"], "../../x"),
]


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def snapshot(ws: Path) -> dict[str, bytes]:
    return {str(p.relative_to(ws)): p.read_bytes() for p in sorted(ws.rglob("*"))
            if p.is_file() and not p.name.endswith(".run.json")}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_keeps_every_artifact(base, tmp_path, monkeypatch, capsys, case):
    _, breaker, argv, names = case
    ws = tmp_path / "ws"
    shutil.copytree(base, ws, symlinks=True)
    if isinstance(breaker, tuple):
        monkeypatch.setenv(breaker[1], breaker[2])
    elif breaker is not None:
        breaker(ws)
    before = snapshot(ws)
    monkeypatch.chdir(ws)
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("ltm: error: ") and err.count("\n") == 1, err
    assert names in err and "Traceback" not in out + err, err
    assert "code ran" not in out
    assert snapshot(ws) == before  # nothing earlier was touched, nothing half-written appeared
    json.dumps(err)  # plain text
