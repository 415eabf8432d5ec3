"""The model-family registry and the run specs built from params: one typed config per section."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ltm.config import load_params
from ltm.diffusion import DiffusionConfig
from ltm.errors import LtmError
from ltm.families import FAMILIES, family
from ltm.fast_loop import PosteriorConfig
from ltm.grid import train_sections
from ltm.runs import TrainConfig, resolve_run

ROOT = Path(__file__).resolve().parents[1]
# the functions of the interface in ltm.families.base
INTERFACE = ("model_config", "build", "train_loss", "val_loss", "train_flops", "flops_model", "score_split",
             "t_curve", "sample", "summary")


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml", env={})


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_implements_the_whole_interface(name):
    impl = family(name).impl
    missing = [f for f in INTERFACE if not callable(getattr(impl, f, None))]
    assert missing == []


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_extra_tokens_are_the_rows_a_family_adds_to_the_vocabulary(name, params):
    """What a model scores is checked against the data's vocabulary through `extra_tokens` (model_files)."""
    preset = next(m for m in params["models"].values() if m["family"] == name)
    cfg = family(name).impl.model_config(123, 16, {k: v for k, v in preset.items() if k != "family"})
    assert cfg.vocab_size == 123 + family(name).extra_tokens


def test_the_schema_admits_exactly_the_registered_families():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "params.schema.yaml").read_text())
    assert sorted(schema["$defs"]["model"]["properties"]["family"]["enum"]) == sorted(FAMILIES)
    assert sorted(schema["properties"]["sweep"]["properties"]) == sorted(FAMILIES)
    with pytest.raises(LtmError, match="unknown model family 'rnn'"):
        family("rnn")


def test_run_specs_carry_typed_settings_of_their_own_family_only(params):
    ltm, ar, mdlm = (resolve_run(params, r) for r in ("ltm-tiny", "ar-tiny", "mdlm-tiny"))
    assert isinstance(ltm.posterior, PosteriorConfig) and ltm.diffusion is None
    assert ltm.posterior.steps == ltm.inner_steps == params["posterior"]["inner_steps"]
    assert ltm.posterior.betas == tuple(params["posterior"]["betas"])
    assert ar.posterior is None and ar.diffusion is None and ar.inner_steps == 0
    assert mdlm.posterior is None and isinstance(mdlm.diffusion, DiffusionConfig)
    assert mdlm.diffusion.t_min == params["diffusion"]["t_min"]
    for spec in (ltm, ar, mdlm):
        assert isinstance(spec.train, TrainConfig) and spec.train.lr == params["train"]["lr"]


def test_a_sweep_point_overrides_T_and_N_z_and_depends_only_on_its_own_process(params):
    spec = resolve_run(params, "ltm-tiny-D50000-T2-Z8")
    assert (spec.tokens, spec.inner_steps, spec.model["n_latents"]) == (50000, 2, 8)
    assert train_sections(params, "ltm-tiny-D50000-T2-Z8") == ["models.ltm-tiny", "posterior", "train"]
    assert train_sections(params, "ar-tiny-D25000") == ["models.ar-tiny", "train"]
    assert train_sections(params, "mdlm-tiny-D25000") == ["models.mdlm-tiny", "diffusion", "train"]
    # the run hash follows what the run reads: the diffusion process does not touch an LTM point
    other = {**params, "diffusion": {**params["diffusion"], "eps": 0.01}}
    assert resolve_run(other, "ltm-tiny-D50000-T2-Z8").hash("d") == spec.hash("d")
    assert resolve_run(other, "mdlm-tiny-D25000").hash("d") != resolve_run(params, "mdlm-tiny-D25000").hash("d")


def test_runs_that_mix_families_and_latents_are_refused(params):
    with pytest.raises(LtmError, match="takes no latents and no inner_steps"):
        resolve_run(params, "ar-tiny-D1000-T2-Z8")
    with pytest.raises(LtmError, match="tokens must be >= 1"):
        resolve_run(params, "ar-tiny-D0")
    with pytest.raises(LtmError, match="unknown run"):
        resolve_run(params, "nothing-like-a-run")


def test_no_family_name_is_compared_outside_the_registry():
    """Code outside ltm.families asks what a family is (has_latents, exact_likelihood, ...), never its name."""
    import ast

    package = ROOT / "src" / "ltm"
    # "ltm" is also the package's and the command's name: the module scan and the lineage command line
    package_name_users = {package / "pipeline.py", package / "lineage.py"}
    found = []
    for path in package.rglob("*.py"):
        if package / "families" in path.parents:
            continue
        names = set(FAMILIES) - ({"ltm"} if path in package_name_users else set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(isinstance(s, ast.Constant) and s.value in names for s in sides):
                    found.append(f"{path.relative_to(package)}:{node.lineno}")
    assert found == []
