"""paths.confined: a file name from elsewhere stays in its folder, or is refused naming it."""
from __future__ import annotations

import pytest

from imgcls.errors import DataError, ProviderError
from imgcls.paths import confined


def test_names_inside_the_folder_pass(tmp_path):
    assert confined(tmp_path, "model.tflite", "the service") == tmp_path / "model.tflite"
    assert confined(tmp_path, "sub/dict.txt", "the service") == tmp_path / "sub" / "dict.txt"
    assert confined(tmp_path, "a/../b.txt", "the service") == tmp_path / "a/../b.txt"   # still inside


@pytest.mark.parametrize("name", ["../escaped.txt", "a/../../escaped.txt", "/etc/passwd", "..", "", ".",
                                  "a/\x00b"])
def test_names_that_lead_out_or_name_no_file_are_refused(tmp_path, name):
    folder = tmp_path / "export"
    with pytest.raises(ProviderError) as refused:
        confined(folder, name, "the Vertex AI export")
    assert repr(name) in refused.value.message and "the Vertex AI export" in refused.value.message
    assert refused.value.exit_code == 6 and refused.value.details["name"] == name


def test_a_symbolic_link_out_of_the_folder_is_refused_and_the_error_class_is_the_callers(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "link").symlink_to(tmp_path)
    with pytest.raises(DataError) as refused:
        confined(folder, "link/escaped.txt", "the manifest", error=DataError)
    assert refused.value.exit_code == 4 and "outside" in refused.value.message
