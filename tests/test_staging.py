"""``staged_folder``: an output folder appears whole or not at all."""
import pytest

from snn_compile.staging import staged_folder


def test_a_finished_folder_replaces_the_old_one(tmp_path):
    out = tmp_path / "sub" / "out"
    with staged_folder(out) as staging:
        (staging / "a.txt").write_text("first")
    with staged_folder(out) as staging:
        (staging / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]      # no staging or backup left


def test_a_failure_leaves_the_old_folder_and_no_debris(tmp_path):
    out = tmp_path / "out"
    with staged_folder(out) as staging:
        (staging / "a.txt").write_text("kept")
    with pytest.raises(RuntimeError):
        with staged_folder(out) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("run failed")
    assert (out / "a.txt").read_text() == "kept" and not (out / "half.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
