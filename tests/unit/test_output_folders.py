"""Issue 20, item 1: an output folder never costs the user what was in it.

`labpipe model init-tiny --out DIR` and `labpipe evaluate mt-bench --out DIR` replaced a non-empty DIR (a user's
notes.txt gone, rc 0), and `--out .` ended in a ValueError traceback. Every command writes its folder through
`labpipe.storage.atomic_dir` (or `publish_dir`), so the rule is checked there and through the CLI.
"""

from __future__ import annotations

import pytest

from labpipe import storage
from labpipe.cli import main
from labpipe.errors import UserError


def _write(dest, **files):
    with storage.atomic_dir(dest) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)


def test_a_folder_holding_the_users_files_is_refused_and_left_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError) as err:
        _write(out, a="1")
    assert "notes.txt" in str(err.value) and "nothing was changed" in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_rewriting_our_own_output_replaces_it_and_drops_stale_entries(tmp_path):
    out = tmp_path / "out"
    _write(out, a="1", b="1")
    _write(out, a="2")
    assert (out / "a").read_text() == "2"
    assert not (out / "b").exists()
    assert sorted(p.name for p in out.iterdir()) == [".labpipe-output", "a"]


def test_a_failed_rewrite_keeps_the_previous_output_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"
    _write(out, a="1")
    with pytest.raises(RuntimeError):
        with storage.atomic_dir(out) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError
    assert (out / "a").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == [".labpipe-output", "a"]


def test_an_empty_existing_folder_is_filled(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _write(out, a="1")
    assert (out / "a").read_text() == "1"


def test_publish_dir_keeps_the_users_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "report.html").write_text("r")
    out = tmp_path / "eval"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError):
        storage.publish_dir(src, str(out))
    assert (out / "notes.txt").read_text() == "mine"


def test_init_tiny_refuses_a_folder_with_the_users_notes(tmp_path, capsys):
    out = tmp_path / "tiny"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["model", "init-tiny", "--out", str(out)]) == 1
    assert (out / "notes.txt").read_text() == "mine"
    assert "labpipe did not write (notes.txt)" in capsys.readouterr().err


def test_init_tiny_out_dot_writes_into_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["model", "init-tiny", "--out", "."]) == 0
    assert (tmp_path / "config.json").exists() and (tmp_path / "tokenizer.json").exists()
    assert main(["model", "init-tiny", "--out", "."]) == 0  # ours: rewritten, no error
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".labpipe-") and p.is_dir()]
