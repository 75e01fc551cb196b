"""File limits: oversized, binary and device files, built-in names, permissions."""



import pytest

import mechsim
from mechsim import ParseError
from mechsim.io.toml_source import MAX_FILE_BYTES

REGIMEN = "100 mg iv every 7 days x 3"


# ---- file limits ---------------------------------------------------------------------------

def test_oversized_files_are_refused_before_reading(tmp_path):
    big = tmp_path / "huge.toml"
    with big.open("w") as fh:
        fh.write("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    for load in (mechsim.load_model, mechsim.load_params, mechsim.load_population):
        with pytest.raises(ParseError, match=r"huge.toml: file is 5\.0 MB, larger than"):
            load(big)


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "model.toml"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ParseError, match="not a text file"):
        mechsim.load_model(path)


def test_atomic_files_get_the_usual_permissions(tmp_path):
    """mkstemp makes owner-only files; outputs must be readable like any other file."""
    import os

    from mechsim.io.atomic import write_text_atomically

    mask = os.umask(0o022)
    try:
        path = write_text_atomically(tmp_path / "x.csv", "a\n")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_local_folder_does_not_hide_a_built_in(tmp_path, monkeypatch):
    (tmp_path / "one_compartment").mkdir()
    monkeypatch.chdir(tmp_path)
    assert mechsim.load_model("one_compartment").name == "one_compartment"
    with pytest.raises(ParseError, match="is a folder"):
        mechsim.load_model("./one_compartment")


def test_a_device_is_not_read():
    from mechsim.scenario import read_scenario

    with pytest.raises(ParseError, match="not a regular file"):
        read_scenario("/dev/zero")
