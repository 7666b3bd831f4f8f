"""The project as an installable, lint-clean package."""

import re
import shutil
import subprocess
import tomllib

import pytest

from analysis.paths import PROJECT_ROOT


def _requirement_lines(text):
    return {re.split(r"[<>=!~\[]", line)[0].strip().lower(): line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")}


def test_pyproject_and_requirements_list_the_same_packages_and_bounds():
    """requirements.txt (the README's install command) and pyproject.toml (pip install -e .)
    must not drift apart: every dependency, extras included, appears in both with one bound."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"]) + [d for extra in project["optional-dependencies"].values() for d in extra]
    declared = _requirement_lines("\n".join(declared))
    required = _requirement_lines((PROJECT_ROOT / "requirements.txt").read_text())
    assert declared == required


def test_version_comes_from_the_package():
    import analysis

    text = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert 'version = { attr = "analysis.__version__" }' in text
    assert re.fullmatch(r"\d+\.\d+\.\d+", analysis.__version__)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_the_code_is_clean_under_ruff():
    out = subprocess.run(["ruff", "check", "--no-cache", "."], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
