"""The ``symadj`` command line."""

from __future__ import annotations

import subprocess
import sys

from conftest import SHIPPED

from symadj._cli import main
from symadj._tableaux_plugin import shipped_tableaux_dir


def test_tableaux_lists_every_shipped_scheme(capsys):
    assert main(["tableaux"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert f"\n{name} " in out
    assert "dopri5       5(4)         7  yes              6" in out


def test_verify_accepts_good_files_and_rejects_bad_ones(tmp_path, capsys):
    good = shipped_tableaux_dir() / "rk4.toml"
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace('b = ["1/6"', 'b = ["1/5"'))
    assert main(["tableaux", "--verify", str(good)]) == 0
    assert main(["tableaux", "--verify", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert "ok   " in captured.out and "FAIL" in captured.err and "bad.toml" in captured.err


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "symadj", "backends"], capture_output=True, text=True)
    assert result.returncode == 0 and "torch" in result.stdout and "numpy" in result.stdout
