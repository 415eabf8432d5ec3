"""params.yaml validation: every mistake fails before any work, naming the key."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ltm.cli import main
from ltm.config import load_params, params_hash, subset
from ltm.errors import LtmError

ROOT = Path(__file__).resolve().parents[1]


def write_params(tmp_path: Path, edit) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_repo_params_are_valid():
    params = load_params(ROOT / "params.yaml", env={})
    assert params["data"]["tokenizer"]["kind"] in {"bpe", "gpt2"}


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda p: p["data"]["tokenizer"].update(vocab_sise=10), "unknown key data.tokenizer.vocab_sise"),
        (lambda p: p.update(extra={}), "unknown key extra"),
        (lambda p: p["data"]["shards"].update(seq_len="long"), "data.shards.seq_len"),
        (lambda p: p["data"]["shards"].update(seq_len=1), "data.shards.seq_len"),
        (lambda p: p["data"]["corpus"].update(val_fraction=0.0), "data.corpus.val_fraction"),
        (lambda p: p["data"]["corpus"].update(source="web"), "data.corpus.source"),
        (lambda p: p["data"]["corpus"].pop("seed"), "'seed' is a required property"),
        (lambda p: p["runtime"].update(device="tpu"), "runtime.device"),
        (lambda p: p["train"].update(lr=float("nan")), "train.lr: must be a finite number"),
        (lambda p: p["train"].update(grad_clip=float("nan")), "train.grad_clip: must be a finite number"),
        (lambda p: p["posterior"].update(lr_max=float("inf")), "posterior.lr_max: must be a finite number"),
        (lambda p: p["posterior"].update(betas=[0.9, float("nan")]), "posterior.betas.1: must be a finite number"),
        # each section is validated here once; the typed configs built from it do not check again
        (lambda p: p["posterior"].update(inner_steps=-1), "posterior.inner_steps"),
        (lambda p: p["posterior"].update(lr_min=1.0), "posterior: lr_min (1.0) must not exceed lr_max (0.34)"),
        (lambda p: p["demo"]["posterior"].update(lr_max=0.01), "demo.posterior: lr_min (0.034) must not exceed"),
        (lambda p: p["posterior"].update(betas=[0.9, 1.0]), "posterior.betas.1"),
        (lambda p: p["posterior"].update(weight_decay=-1.0), "posterior.weight_decay"),
        (lambda p: p["posterior"].update(adam_eps=0.0), "posterior.adam_eps"),
        (lambda p: p["train"].update(min_lr=1.0), "train: min_lr (1.0) must not exceed lr"),
        (lambda p: p["diffusion"].update(schedule="geometric"), "diffusion.schedule"),
        (lambda p: p["diffusion"].update(eps=1.0), "diffusion.eps"),
        (lambda p: p["diffusion"].update(t_min=-0.1), "diffusion.t_min"),
        (lambda p: p["eval"].update(sample=3), "unknown key eval.sample"),
        (lambda p: p["eval"].update(samples=0), "eval.samples"),
        (lambda p: p["eval"].update(batch_size=2.5), "eval.batch_size must be an integer"),
        (lambda p: p["eval"].update(t_eval=-1), "eval.t_eval"),
        (lambda p: p["eval"].update(t_curve=4), "eval.t_curve must be a list"),
        (lambda p: p["eval"].update(t_curve=[0, -2]), "eval.t_curve"),
        (lambda p: p["eval"].update(splits="val"), "eval.splits must be a list"),
        (lambda p: p["eval"].update(lr_schedule="warm"), "eval.lr_schedule"),
        (lambda p: p["fewshot"].update(pool=0), "fewshot.pool"),
        (lambda p: p["train"].update(val_diffusion_samples=0), "train.val_diffusion_samples"),
    ],
)
def test_bad_params_name_the_key(tmp_path, edit, expected):
    path = write_params(tmp_path, edit)
    with pytest.raises(LtmError) as err:
        load_params(path, env={})
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(LtmError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(LtmError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_params_that_are_not_utf8(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_bytes(b"data: \xff\xfe\n")
    with pytest.raises(LtmError, match="not UTF-8"):
        load_params(bad)


@pytest.mark.parametrize("env, expected", [({"LTM_DEVICE": "bogus"}, "LTM_DEVICE='bogus'"),
                                           ({"LTM_THREADS": "-2"}, "LTM_THREADS='-2'"),
                                           ({"LTM_MICRO_BATCH": "-1"}, "LTM_MICRO_BATCH='-1'")])
def test_bad_runtime_overrides_are_one_line_errors(env, expected):
    with pytest.raises(LtmError) as err:
        load_params(ROOT / "params.yaml", env=env)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_device_this_build_cannot_use_is_refused():
    import torch

    from ltm.device import resolve_device
    from ltm.runtime import Runtime

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(LtmError, match="sees no CUDA device"):
        resolve_device(Runtime("cuda", 0, 0, False, "auto", False))
    assert resolve_device(Runtime("auto", 0, 0, False, "auto", False)).type in {"cpu", "mps"}


def test_runtime_env_overrides_and_never_enters_a_hash():
    params = load_params(ROOT / "params.yaml", env={"LTM_DEVICE": "cpu", "LTM_THREADS": "3", "LTM_COMPILE": "1"})
    assert params["runtime"] == {**params["runtime"], "device": "cpu", "threads": 3, "compile": True}
    with pytest.raises(LtmError, match="LTM_THREADS"):
        load_params(ROOT / "params.yaml", env={"LTM_THREADS": "many"})
    assert load_params(ROOT / "params.yaml", env={"LTM_PRECISION": "bf16"})["runtime"]["precision"] == "bf16"
    # the schema is the one statement of what a value may be: the override is checked against it
    with pytest.raises(LtmError, match=r"LTM_PRECISION='fp16'.*runtime.precision: 'fp16' is not one of \['auto', 'fp32', 'bf16'\]"):
        load_params(ROOT / "params.yaml", env={"LTM_PRECISION": "fp16"})
    with pytest.raises(ValueError):
        params_hash(params)


def test_params_hash_ignores_order_but_not_values():
    a = {"x": 1, "y": {"b": 2, "a": 3}}
    b = {"y": {"a": 3, "b": 2}, "x": 1}
    assert params_hash(a) == params_hash(b)
    assert params_hash(a) != params_hash({**a, "x": 2})
    params = load_params(ROOT / "params.yaml", env={})
    assert list(subset(params, ["data.shards"])) == ["data.shards"]
    with pytest.raises(LtmError, match="no key data.nope"):
        subset(params, ["data.nope"])


def test_cli_bad_params_is_one_line_and_exit_2(tmp_path, capsys):
    path = write_params(tmp_path, lambda p: p["data"]["shards"].update(dtype="int8"))
    assert main(["params", "--params", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ltm: error:") and err.count("\n") == 1 and "data.shards.dtype" in err


def test_snakefile_rejects_the_same_bad_key(tmp_path):
    """The Snakefile validates params.yaml with the same schema before any job runs."""
    import shutil

    for item in ["Snakefile", "workflow", "inputs"]:
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    write_params(tmp_path, lambda p: p["data"]["tokenizer"].update(vocab_sise=10))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode != 0
    assert "vocab_sise" in run.stdout + run.stderr


@pytest.mark.parametrize("command", ["corpus", "tokenizer", "shards", "train", "evaluate", "generate", "generation",
                                     "fewshot", "scaling", "report", "params"])
def test_every_stage_has_help_and_params(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert "--params PATH" in capsys.readouterr().out


def test_params_yaml_survives_dvc_exp_set_param(tmp_path):
    """`dvc exp run -S KEY=VALUE` rewrites params.yaml through DVC's own override code: the file must come
    back byte-identical except for the one value set (no flow mapping expanded, no comment or null lost)."""
    from dvc.utils.hydra import apply_overrides

    text = (ROOT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(text)
    apply_overrides(str(path), ["runs.ltm-tiny.tokens=123456"])
    before, after = text.splitlines(), path.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 1, changed or set(before) ^ set(after)
    assert "123456" in changed[0][1]
    assert yaml.safe_load(path.read_text())["data"]["corpus"]["hf_name"] is None


def _merged(base: dict, over: dict) -> dict:
    return {k: _merged(base[k], v) if isinstance(v, dict) and v and isinstance(base.get(k), dict) else v
            for k, v in {**base, **over}.items()}


def test_the_readmes_params_snippets_are_valid_params(tmp_path):
    """Each yaml block of the README, applied in order over params.yaml as the README says, is accepted."""
    blocks = (ROOT / "README.md").read_text().split("```yaml\n")[1:]
    assert len(blocks) >= 2
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for block in blocks:
        params = _merged(params, yaml.safe_load(block.split("```")[0]))
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        load_params(path, env={})


def test_stages_without_tensors_start_without_torch_and_the_others_get_their_threads(tmp_path):
    """corpus, tokenizer, shards, scaling and report never import torch (about 1.8 s of every start on this
    machine); a stage that does import it has runtime.threads applied when it begins."""
    params = write_params(tmp_path, lambda p: p["runtime"].update(threads=1))
    code = ("import sys\nimport ltm.stages.corpus, ltm.stages.tokenizer, ltm.stages.shards, ltm.stages.scaling\n"
            "import ltm.stages.report\nprint('torch' in sys.modules)\n"
            "import ltm.stages.train, torch\nfrom ltm.stage_run import begin\n"
            f"torch.set_num_threads(2)\nbegin('train', {str(params)!r})\nprint(torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k != "LTM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["False", "1"]
