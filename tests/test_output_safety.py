"""An output path can never destroy what it does not own; run names never climb out of their folders."""
import json
from pathlib import Path

import pytest

from ltm.cli import main
from ltm.errors import LtmError
from ltm.io import OWNER_FILE, atomic_dir


def _fill(folder, name="keep.txt"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("precious")


def test_atomic_dir_replaces_missing_empty_or_own_folders(tmp_path):
    for case in ("missing", "empty", "own"):
        out = tmp_path / case
        if case == "empty":
            out.mkdir()
        if case == "own":
            with atomic_dir(out, owner="corpus") as tmp:
                (tmp / "old").write_text("1")
        with atomic_dir(out, owner="corpus") as tmp:
            (tmp / "new").write_text("2")
        assert (out / "new").read_text() == "2" and not (out / "old").exists()
        assert (out / OWNER_FILE).read_text().strip() == "corpus"


def test_atomic_dir_refuses_a_folder_it_does_not_own(tmp_path):
    foreign = tmp_path / "data"
    _fill(foreign / "shards")
    with pytest.raises(LtmError, match="refusing to replace .*data: it is not empty and not an earlier corpus output"):
        with atomic_dir(foreign, owner="corpus"):
            pass
    assert (foreign / "shards" / "keep.txt").read_text() == "precious"
    other = tmp_path / "tok"
    with atomic_dir(other, owner="tokenizer") as tmp:
        (tmp / "x").write_text("1")
    with pytest.raises(LtmError, match="not an earlier report output"):
        with atomic_dir(other, owner="report"):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(LtmError, match="is a file"):
        with atomic_dir(tmp_path / "file", owner="report"):
            pass


def test_an_older_artifact_is_recognised_by_its_lineage_record(tmp_path):
    old = tmp_path / "reports"
    _fill(old)
    (old / "lineage.json").write_text(json.dumps({"stage": "report"}))
    with atomic_dir(old, owner="report") as tmp:
        (tmp / "report.md").write_text("new")
    assert (old / "report.md").read_text() == "new"


def test_report_into_the_runs_folder_is_refused_and_destroys_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fill(tmp_path / "runs" / "ltm-tiny")
    from conftest import write_params

    code = main(["report", "--params", str(write_params(tmp_path)), "--out", "runs"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "refusing to replace runs" in err
    assert (tmp_path / "runs" / "ltm-tiny" / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("run", ["../../x", "a/b", "..", "x y", ""])
def test_run_names_that_are_paths_are_refused(run, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--run", run]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ltm: error: --run") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_second_writer_of_the_same_folder_is_refused(tmp_path):
    import subprocess
    import sys

    from ltm.io import exclusive

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from ltm.io import exclusive\n"
                               f"with exclusive({str(tmp_path)!r}):\n print('held', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LtmError, match=f"is being written by process {holder.pid}"):
            with exclusive(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive(tmp_path):  # the OS released the dead holder's lock
        pass


def test_a_kill_between_the_two_renames_loses_nothing(tmp_path):
    """NAME moved to .NAME.old, then killed before the new folder arrived: the next start restores it."""
    import os

    out = tmp_path / "shards"
    with atomic_dir(out, owner="shards") as tmp:
        (tmp / "v").write_text("1")
    os.replace(out, tmp_path / ".shards.old")  # the state a SIGKILL between the renames leaves
    dead = tmp_path / ".shards.999999999.abc.tmp"  # a temp folder of a process that no longer exists
    dead.mkdir()
    with pytest.raises(RuntimeError):
        with atomic_dir(out, owner="shards"):
            assert (out / "v").read_text() == "1"  # restored before the new work starts
            raise RuntimeError("the rerun fails too")
    assert (out / "v").read_text() == "1" and not dead.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]


def test_an_out_that_is_a_file_is_one_line(tmp_path, capsys, monkeypatch):
    from conftest import write_params

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    params = str(write_params(tmp_path, {"data": {"corpus": {"source": "synthetic"}}}))
    assert main(["corpus", "--params", params, "--out", "afile/corpus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ltm: error:") and err.count("\n") == 1 and "afile" in err
    assert (tmp_path / "afile").read_text() == "x"


class _Evil:
    def __reduce__(self):
        return (print, ("this ran",))


def test_a_pickle_with_code_is_refused_and_named_as_such(tmp_path):
    import torch

    from ltm.checkpoint import load

    torch.save({"format": 1, "x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(LtmError, match="holds Python objects beyond tensors"):
        load(tmp_path / "evil.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 not a whole archive")
    with pytest.raises(LtmError, match="truncated, or not a torch file"):
        load(tmp_path / "cut.pt")


def test_a_checkpoint_without_its_keys_is_refused(tmp_path):
    import torch

    from ltm.checkpoint import FORMAT, load

    torch.save({"format": FORMAT, "model": {}}, tmp_path / "part.pt")
    with pytest.raises(LtmError, match="lacks run_hash, step"):
        load(tmp_path / "part.pt")


def test_a_corrupt_shards_manifest_is_one_line(tmp_path):
    from ltm.data.loader import TokenShards

    (tmp_path / "manifest.json").write_text('{"splits": ')
    with pytest.raises(LtmError, match="manifest.json is corrupt"):
        TokenShards(tmp_path, "train")
    (tmp_path / "manifest.json").write_text('{"splits": {"train": {}}}')
    with pytest.raises(LtmError, match="manifest.json is corrupt"):
        TokenShards(tmp_path, "train")


def test_the_previous_result_survives_a_deletion_and_comes_back_out_of_date(tmp_path, monkeypatch):
    from ltm.previous import STALE_TIME, keep, restore

    monkeypatch.chdir(tmp_path)
    _fill(tmp_path / "runs/a/model", "model.pt")
    (tmp_path / "results").mkdir()
    (tmp_path / "results/m.json").write_text("v1")
    assert keep(["runs/a/model", "results/m.json", "results/absent.json"]) == [Path("runs/a/model"),
                                                                               Path("results/m.json")]
    # what Snakemake does to the outputs of a job it is about to run, or that failed
    import shutil
    shutil.rmtree(tmp_path / "runs/a/model")
    (tmp_path / "results/m.json").unlink()
    # a second start while they are missing keeps the only copy left
    assert keep(["runs/a/model", "results/m.json"]) == []
    assert restore(["runs/a/model", "results/m.json", "results/absent.json"]) == [Path("runs/a/model"),
                                                                                  Path("results/m.json")]
    assert (tmp_path / "runs/a/model/model.pt").read_text() == "precious"
    assert (tmp_path / "results/m.json").read_text() == "v1"
    assert (tmp_path / "results/m.json").stat().st_mtime == STALE_TIME  # older than any input: rerun
    # an existing output is never overwritten by its older copy
    (tmp_path / "results/m.json").write_text("v2")
    assert restore(["results/m.json"]) == [] and (tmp_path / "results/m.json").read_text() == "v2"
    with pytest.raises(ValueError, match="inside the project"):
        keep(["../outside"])


def test_restore_without_a_previous_copy_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["restore", "results/eval/x/metrics.json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ltm: error: no previous copy of results/eval/x/metrics.json") and err.count("\n") == 1
