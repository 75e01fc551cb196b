"""docs/nca.md shows real output: its two `mechsim nca` examples are run as written and
compared with what the page prints (the pheno table's elided rows aside)."""

import os
import shlex
from pathlib import Path

import pytest

from mechsim.cli import main

DOC = (Path(__file__).resolve().parent.parent / "docs" / "nca.md").read_text()


def documented(command_start: str) -> tuple[list[str], list[str]]:
    """The command after ``$ `` that starts with ``command_start``, and the lines below it
    up to the end of its code block."""
    at = DOC.index(f"$ {command_start}")
    block = DOC[at:DOC.index("```", at)].rstrip("\n").split("\n")
    return shlex.split(block[0][2:])[1:], block[1:]


def run(args, folder, capsys) -> list[str]:
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(args) == 0
    finally:
        os.chdir(cwd)
    return capsys.readouterr().out.rstrip("\n").split("\n")


def test_the_worked_example_is_reproduced(tmp_path, capsys):
    args, lines = documented("mechsim nca one_compartment")
    assert run(args, tmp_path, capsys) == lines


@pytest.mark.parametrize("start", ["mechsim nca --data pheno"])
def test_the_pheno_example_is_reproduced_apart_from_the_cut_rows(tmp_path, capsys, start):
    args, lines = documented(start)
    got = run(args, tmp_path, capsys)
    cut = lines.index("...")
    head, tail = lines[:cut], lines[cut + 1:]
    assert got[:len(head)] == head and got[-len(tail):] == tail
    assert (tmp_path / "pheno_nca.csv").exists()
