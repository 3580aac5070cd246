"""`definitions.sources.classify`: the one reading of a model, data or study string as a
file or folder (data) or as Python code, and the questions built on it (a study
reference, code a record names, a data loader, a parent's kind, as recorded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from definitions.importer import as_recorded, is_reference
from definitions.sources import classify, names_code, target_is_file


@pytest.mark.parametrize("text, target, attr", [
    ("pkg.mod:NAME", "pkg.mod", "NAME"),
    ("study.py:NAME", "study.py", "NAME"),
    ("path/to/loader.py:load", "path/to/loader.py", "load"),
    ("C:\\loaders\\load.py:load", "C:\\loaders\\load.py", "load"),
    ("a:b:c", "a:b", "c"),  # the last colon splits
])
def test_target_colon_identifier_naming_nothing_on_disk_is_code(text, target, attr):
    source = classify(text)
    assert (source.kind, source.target, source.attr) == ("code", target, attr)
    assert names_code(text) and is_reference(text)
    assert not source.python_file


@pytest.mark.parametrize("text", [
    "digits.npz",  # does not exist: a file all the same, its loader says so
    "path/to/study.py",
    "C:\\data\\digits.npz",  # the last colon is not followed by an identifier
    "images/",
    "data:1",  # `1` is no identifier
    "mnist",
])
def test_everything_else_is_a_file(text):
    source = classify(text)
    assert (source.kind, source.target, source.attr) == ("file", None, None)
    assert source.path == Path(text).expanduser()
    assert not names_code(text)


def test_an_existing_file_with_a_colon_in_its_name_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights:final").write_bytes(b"")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "run:last").mkdir()
    for text in ("weights:final", str(tmp_path / "weights:final"), "nested/run:last"):
        assert classify(text).kind == "file", text
        assert not names_code(text) and not is_reference(text)
    assert classify("weights:other").kind == "code"  # no such file: code again


def test_a_home_path_is_looked_for_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "x:load").write_bytes(b"")
    assert classify("~/x:load").kind == "file"
    assert classify("~/x:load").path == tmp_path / "x:load"
    assert classify("~/y:load").kind == "code"


def test_a_path_object_is_a_file_whatever_it_reads():
    assert classify(Path("pkg.mod:NAME")).kind == "file"
    assert classify(Path("~/data.npz")).path == Path("~/data.npz").expanduser()


def test_only_strings_name_code():
    assert not names_code(None) and not names_code(3) and not names_code(Path("a:b"))


def test_a_python_file_is_a_study_reference_not_code():
    source = classify("path/to/study.py")
    assert source.python_file and source.kind == "file"
    assert is_reference("path/to/study.py") and not names_code("path/to/study.py")
    assert not classify("data.npz").python_file
    assert not is_reference("digits") and not is_reference("data.npz")


@pytest.mark.parametrize("target, in_file", [
    ("pkg.mod", False), ("loader.py", True), ("dir/loader", True), ("C:\\x\\load", True),
])
def test_a_target_is_a_file_or_a_module(target, in_file):
    assert target_is_file(target) is in_file


def test_as_recorded_makes_an_existing_path_absolute_and_code_canonical(tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.npz").write_bytes(b"")
    assert as_recorded("d.npz") == str(tmp_path / "d.npz")
    assert as_recorded("pkg.mod:load") == "pkg.mod:load"
    assert as_recorded("x/loader.py:load") == f"{tmp_path / 'x' / 'loader.py'}:load"
    assert as_recorded("missing.npz") == "missing.npz"
