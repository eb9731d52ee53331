import subprocess
import sys

import pytest

from minilm.cli import COMMANDS, build_parser, main


def test_every_command_is_listed_with_a_summary():
    text = build_parser().format_help()
    for name in COMMANDS:
        assert name in text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    assert "usage: minilm" in capsys.readouterr().out


def test_an_unknown_command_is_a_usage_error():
    run = subprocess.run([sys.executable, "-m", "minilm.cli", "fly"], capture_output=True, text=True)
    assert run.returncode == 2 and "invalid choice: 'fly'" in run.stderr
