"""Lineage records hash the same when the same inputs make the same artifact; times live beside them."""
import subprocess

from ltm import lineage


def test_record_is_byte_identical_across_reruns_and_times_sit_beside_it(tmp_path):
    art = tmp_path / "artifact"
    art.mkdir()
    (art / "data.bin").write_bytes(b"same content")
    records = []
    for started in ("2026-01-01T00:00:00+00:00", "2026-06-01T00:00:00+00:00"):
        lineage.write_record(art, stage="corpus", params={"data.corpus": {"seed": 1}}, inputs={}, started=started)
        records.append((art / "lineage.json").read_bytes())
    assert records[0] == records[1]
    assert b"started" not in records[0] and b"finished" not in records[0]
    merged = lineage.read_record(art)
    assert merged["started"] == "2026-06-01T00:00:00+00:00" and "git" in merged and merged["stage"] == "corpus"
    # the CPU (trained weights depend on its vector instructions) is in the run file, never in the record
    assert merged["machine"]["arch"] and merged["machine"]["cpu"] and b"machine" not in records[0]
    # the run file never enters the artifact's content hash
    before = lineage.content_hash(art)
    (art / "lineage.run.json").write_text("{}")
    assert lineage.content_hash(art) == before


def test_dvc_lock_rewritten_by_dvc_does_not_make_the_tree_dirty(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "dvc.lock").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "-A")
    git("commit", "-qm", "init")
    (tmp_path / "dvc.lock").write_text("b\n")
    assert lineage.git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert lineage.git_state(tmp_path)["dirty"] is True


def test_a_chain_links_each_artifact_to_its_inputs_and_flags_what_changed(tmp_path):
    import pytest

    from ltm.errors import LtmError

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.arrow").write_bytes(b"documents")
    lineage.write_record(corpus, stage="corpus", params={"data.corpus": {}}, inputs={}, started=lineage.now())
    metrics = tmp_path / "eval" / "metrics.json"
    metrics.parent.mkdir()
    metrics.write_text('{"bpb": 1.0}\n')
    lineage.write_record(metrics, stage="evaluate", params={"eval": {"seed": 0}}, inputs={"corpus": corpus},
                         started=lineage.now(), record=metrics.parent / "lineage.json")
    rec = lineage.read_record(metrics)
    assert rec["inputs"]["corpus"]["sha256"] == lineage.content_hash(corpus)
    assert rec["inputs"]["corpus"]["lineage"] == (corpus / "lineage.json").as_posix()
    chain = [(depth, r["stage"], problems) for depth, r, problems in lineage.walk(metrics)]
    assert chain == [(0, "evaluate", []), (1, "corpus", [])]
    lineage.check_file(metrics)  # as written: accepted

    (corpus / "train.arrow").write_bytes(b"other documents")
    metrics.write_text('{"bpb": 0.5}\n')
    problems = next(lineage.walk(metrics))[2]
    assert any("changed since its stage wrote it" in p for p in problems)
    assert any("input corpus" in p and "changed since this artifact was made" in p for p in problems)
    assert "!! input corpus" in lineage.format_chain(metrics)
    with pytest.raises(LtmError, match="was changed after stage evaluate wrote it"):
        lineage.check_file(metrics)
    with pytest.raises(LtmError, match="no lineage record"):
        lineage.read_record(tmp_path / "nothing")
