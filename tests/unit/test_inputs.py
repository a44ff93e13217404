"""What `imgcls predict` accepts as images: files, folders (recursively), globs and import files."""
from __future__ import annotations

import pytest

from imgcls.data.inputs import expand_inputs, local_only, read_image
from imgcls.errors import DataError


@pytest.fixture
def tree(tmp_path):
    for rel in ("a/1.jpg", "a/sub/2.PNG", "a/notes.txt", "b.jpeg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(rel.encode())
    return tmp_path


def test_folders_recurse_to_images_only_and_globs_expand_in_order(tree):
    got = expand_inputs([str(tree / "a"), "  ", str(tree / "*.jpeg")])
    assert got == [str(tree / "a/1.jpg"), str(tree / "a/sub/2.PNG"), str(tree / "b.jpeg")]


@pytest.mark.parametrize("given, message", [
    (["{tree}/missing.jpg"], "no such file: {tree}/missing.jpg"),
    (["{tree}/*.gif"], "no files match '{tree}/*.gif'"),
    (["", "   "], "no images to predict"),
    (["{tree}/b.jpeg", "gs://bucket/x.jpg"], "gs://bucket/x.jpg: only local image files can be predicted"),
])
def test_nothing_to_read_is_a_data_error_naming_it(tree, given, message):
    with pytest.raises(DataError) as err:
        expand_inputs([g.format(tree=tree) for g in given])
    assert message.format(tree=tree) in str(err.value)


def test_an_unreadable_image_names_its_path(tree):
    assert read_image(str(tree / "b.jpeg")) == b"b.jpeg"
    with pytest.raises(DataError, match="cannot read .*a: "):
        read_image(str(tree / "a"))  # a folder


def test_an_import_file_gives_its_images_in_its_order_relative_to_itself(tree):
    (tree / "list.csv").write_text("b.jpeg,red\na/1.jpg\ngs://bucket/x.jpg,blue\n")
    (tree / "list.jsonl").write_text('{"image_url": "a/sub/2.PNG", "label": "x"}\n')
    got = expand_inputs([str(tree / "list.csv"), str(tree / "list.jsonl"), str(tree / "b.jpeg")])
    assert got == [str(tree / "b.jpeg"), str(tree / "a/1.jpg"), "gs://bucket/x.jpg", str(tree / "a/sub/2.PNG"),
                   str(tree / "b.jpeg")]


def test_remote_images_are_refused_where_they_cannot_be_read(tree):
    local_only([str(tree / "b.jpeg"), "gs://bucket/x.jpg"], ("gs",), "batch prediction on vertex")
    with pytest.raises(DataError) as err:
        local_only([str(tree / "b.jpeg"), "gs://bucket/x.jpg", "gs://bucket/y.jpg"])
    assert "gs://bucket/x.jpg (and 1 more): online prediction reads local image files only" in err.value.message
    assert "--batch" in err.value.hint
