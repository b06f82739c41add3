"""scripts/install.sh and the README's set-up commands, run in a fresh copy of the repository.

The setting is as close to a stock Debian/Ubuntu machine as this one allows: a PATH with
``python3`` but no ``python`` and no ``apt-get``, no virtual environment active, and a new
``.venv`` made by the script. To take seconds rather than minutes, the venv is created with
``--system-site-packages`` (``ORRB_VENV_OPTIONS``), so pip finds orrb's dependencies
installed already for the base interpreter instead of downloading them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what install.sh and the README commands call, besides python3 (apt-get, python and sudo left out)
TOOLS = ("bash", "sh", "env", "dirname", "sed", "grep", "id", "ln", "rm", "mkdir", "cat", "dpkg-query", "dpkg")
APT_LINE = re.compile(r"^(sudo )?apt-get install -y( [a-z0-9][a-z0-9.+-]+)+$")


def readme_commands() -> list[str]:
    """The README's bash blocks (the set-up and test commands), in order."""
    with open(os.path.join(REPO, "README.md")) as f:
        return [block.strip() for block in re.findall(r"```bash\n(.*?)```", f.read(), re.S)]


def fresh_copy(tmp_path) -> str:
    """The repository's files (tracked, and new ones git does not ignore) copied to ``tmp_path/orrb``."""
    dest = tmp_path / "orrb"
    listed = subprocess.run(["git", "-C", REPO, "ls-files", "-co", "--exclude-standard", "-z"],
                            capture_output=True, text=True) if shutil.which("git") else None
    if listed is not None and listed.returncode == 0:
        for name in filter(None, listed.stdout.split("\0")):
            source = os.path.join(REPO, name)
            if os.path.isfile(source):
                os.makedirs(dest / os.path.dirname(name), exist_ok=True)
                shutil.copy2(source, dest / name)
    else:
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", "build", "runs", "out", "MUJOCO_LOG.TXT"))
    return str(dest)


def bare_path(tmp_path, python: str | None, fake_dpkg_missing: bool = False) -> str:
    """A PATH folder with the basic tools, ``python3`` -> ``python`` (if given), and no apt-get."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            os.symlink(found, bin_dir / tool)
    if python:
        os.symlink(python, bin_dir / "python3")
    if fake_dpkg_missing:  # a machine where none of the GL packages is installed
        (bin_dir / "dpkg-query").unlink(missing_ok=True)
        (bin_dir / "dpkg-query").write_text("#!/bin/sh\necho \"dpkg-query: no packages found matching $3\" >&2\nexit 1\n")
        (bin_dir / "dpkg-query").chmod(0o755)
    return str(bin_dir)


def stock_env(path: str, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PATH=path, HOME=os.environ.get("HOME", "/root"), **extra)
    return env


def base_python() -> str:
    """The interpreter behind this one (outside any virtual environment)."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def _base_has_dependencies() -> bool:
    probe = "import mujoco, gymnasium, numpy, zmq, tqdm, PIL"
    return subprocess.run([base_python(), "-c", probe], capture_output=True, env=stock_env(os.environ["PATH"])).returncode == 0


needs_base_dependencies = pytest.mark.skipif(
    not _base_has_dependencies(),
    reason="the base interpreter lacks orrb's dependencies: a real install would download them (minutes)")


def test_readme_and_ci_run_the_same_test_command():
    commands = readme_commands()
    assert commands[0].startswith("bash scripts/install.sh") and ".venv/bin/orrb demo" in commands[0]
    assert commands[1].startswith("bash scripts/install.sh --test") and ".venv/bin/python -m pytest" in commands[1]
    with open(os.path.join(REPO, ".ci", "run")) as f:
        ci_lines = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    assert commands[1] in ci_lines


def test_missing_gl_packages_without_apt_get_print_the_apt_line_and_stop(tmp_path):
    repo = fresh_copy(tmp_path)
    path = bare_path(tmp_path, base_python(), fake_dpkg_missing=True)
    proc = subprocess.run(["bash", "scripts/install.sh"], cwd=repo, capture_output=True, text=True, timeout=120,
                          env=stock_env(path))
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if APT_LINE.match(line)]
    assert len(lines) == 1, proc.stdout + proc.stderr
    assert {"libegl1", "libgl1-mesa-dri"} <= set(lines[0].split())
    assert not os.path.exists(os.path.join(repo, ".venv")), "stopped before making an environment"


@needs_base_dependencies
def test_readme_first_command_works_without_python_apt_get_or_an_active_venv(tmp_path):
    repo = fresh_copy(tmp_path)
    path = bare_path(tmp_path, base_python())
    env = stock_env(path, ORRB_VENV_OPTIONS="--system-site-packages")
    proc = subprocess.run(["bash", "-c", readme_commands()[0]], cwd=repo, capture_output=True, text=True,
                          timeout=600, env=env)
    output = proc.stdout + proc.stderr
    apt_lines = [line for line in proc.stderr.splitlines() if APT_LINE.match(line)]
    if proc.returncode != 0 and apt_lines:  # a machine without the GL packages: the one instruction
        assert len(apt_lines) == 1, output
        return
    assert proc.returncode == 0, output
    assert os.path.isfile(os.path.join(repo, ".venv", "pyvenv.cfg")) and not os.path.islink(os.path.join(repo, ".venv"))
    assert "new virtual environment .venv" in output
    assert os.path.getsize(os.path.join(repo, "orrb_demo.png")) > 10_000
    # the venv's orrb is this copy (an editable install), not the one the tests import
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([os.path.join(repo, ".venv", "bin", "python"), "-c", "import orrb; print(orrb.__file__)"],
                           cwd=elsewhere, capture_output=True, text=True, env=env)
    assert where.stdout.strip() == os.path.join(repo, "orrb", "__init__.py"), where.stdout + where.stderr


@needs_base_dependencies
def test_an_active_venv_is_used_as_is_and_linked_as_dot_venv(tmp_path):
    repo = fresh_copy(tmp_path)
    active = tmp_path / "my-env"
    subprocess.run([base_python(), "-m", "venv", "--system-site-packages", str(active)], check=True, timeout=120,
                   env=stock_env(os.environ["PATH"]))
    path = bare_path(tmp_path, None)
    env = stock_env(f"{active}/bin{os.pathsep}{path}", VIRTUAL_ENV=str(active))
    proc = subprocess.run(["bash", "scripts/install.sh"], cwd=repo, capture_output=True, text=True, timeout=600,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.path.islink(os.path.join(repo, ".venv"))
    assert os.path.realpath(os.path.join(repo, ".venv")) == os.path.realpath(active)
    help_proc = subprocess.run([os.path.join(repo, ".venv", "bin", "orrb"), "--help"], capture_output=True,
                               text=True, timeout=60, env=env)
    assert help_proc.returncode == 0 and "demo" in help_proc.stdout, help_proc.stderr
