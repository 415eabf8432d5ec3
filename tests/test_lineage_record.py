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
