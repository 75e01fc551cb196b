"""The [[expect]] worked example of docs/model-format.md: its output is what the docs show."""

import os
import re
from pathlib import Path

from mechsim.cli import main

DOC = (Path(__file__).resolve().parent.parent / "docs" / "model-format.md").read_text()


def block_after(marker: str, fence: str) -> str:
    start = DOC.index(marker)
    body = DOC.index(f"```{fence}\n", start) + len(fence) + 4
    return DOC[body:DOC.index("```\n", body)]


def test_the_documented_check_output_is_reproduced(tmp_path, capsys):
    model = block_after("## Worked example: two-compartment TMDD", "toml")
    entries = block_after("A worked example: the TMDD model above", "toml")
    (tmp_path / "tmdd_2cpt.toml").write_text(model + "\n" + entries)
    documented = DOC[DOC.index("$ mechsim check tmdd_2cpt.toml\n"):]
    documented = documented.split("\n", 1)[1].split("$ echo $?")[0]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["check", "tmdd_2cpt.toml"]) == 1
    finally:
        os.chdir(cwd)
    got = capsys.readouterr().out
    # the mass-balance residual is rounding noise, whose last digits depend on the machine
    # code numba generates for this CPU: compared as "below 1e-12", the rest verbatim
    residual = re.compile(r"mass-balance residual ([0-9.e+-]+)")
    for text in (got, documented):
        assert all(float(r) < 1e-12 for r in residual.findall(text)), text
    assert residual.sub("mass-balance residual R", got) == \
        residual.sub("mass-balance residual R", documented)
    assert re.search(r"\$ echo \$\?\n1\n", DOC)
