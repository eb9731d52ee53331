"""The suite's own rules: a skip outside tests/conftest.py's allow-list fails the run."""

import pathlib
import shutil
import subprocess
import sys

import pytest

CONFTEST = pathlib.Path(__file__).with_name("conftest.py")


@pytest.mark.parametrize("reason, code", [("torch is not installed", 1), ("needs the GPU backend: no CuPy", 0)])
def test_a_skip_fails_the_run_unless_its_reason_is_allowed(tmp_path, reason, code):
    shutil.copy(CONFTEST, tmp_path)
    (tmp_path / "test_one.py").write_text(f"import pytest\n\ndef test_it():\n    pytest.skip({reason!r})\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == code, run.stdout
    assert ("ALLOWED_SKIPS" in run.stdout) == (code == 1)
