"""The ``lorasweep`` command: one table of subcommands, each answering ``--help``."""
from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.cli import COMMANDS, build_parser, main

NAMES = [name for names, _ in COMMANDS for name in names]


def test_the_table_lists_exactly_the_parser_s_subcommands():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert list(sub.choices) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_subcommand_answers_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: lorasweep {name}")


def test_help_imports_no_ray_or_torch():
    code = ("import sys; from orchestrator.cli import build_parser; build_parser(); "
            "print(','.join(m for m in ('ray', 'torch', 'deepspeed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"building the parser imported {out}"


def test_an_unknown_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["frobnicate"])
    assert exit_.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err
