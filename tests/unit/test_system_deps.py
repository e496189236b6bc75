"""Issue 20, item 8: the README's commands bring what they need on a fresh machine.

`make test` failed 2 tests where Chromium was installed only by .ci/run, `make test-containers` stopped with make's
"Error 127" without podman, and images built from a source archive (no .git) were labelled revision "unknown".
scripts/system-deps.sh installs what is missing when it can (root with apt-get) or names it in one line; here it
runs with a PATH that has neither the packages nor apt-get (a user's laptop), and with fake packages on it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bin(tmp_path: Path, *fakes: str) -> str:
    """A PATH with the basic tools only (no apt-get, no chromium/podman), plus `fakes` as stand-ins."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for tool in ("bash", "id", "env"):
        target = folder / tool
        if not target.exists():
            target.symlink_to(shutil.which(tool))
    for fake in fakes:
        (folder / fake).write_text("#!/bin/sh\nexit 0\n")
        (folder / fake).chmod(0o755)
    return str(folder)


@pytest.mark.parametrize(
    "target, packages",
    [
        ("test", "chromium"),
        ("containers", "podman buildah runc fuse-overlayfs uidmap debootstrap"),
    ],
)
def test_missing_packages_are_named_in_one_line(tmp_path, target, packages):
    proc = subprocess.run(
        [str(REPO / "scripts" / "system-deps.sh"), target],
        capture_output=True,
        text=True,
        env={"PATH": _bin(tmp_path)},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"make {target} needs {packages}: install them first (Debian/Ubuntu: sudo apt-get install -y {packages})"
    ]


def test_nothing_to_do_when_everything_is_there(tmp_path):
    path = _bin(tmp_path, "chromium")
    proc = subprocess.run(
        [str(REPO / "scripts" / "system-deps.sh"), "test"], capture_output=True, text=True, env={"PATH": path}
    )
    assert proc.returncode == 0 and proc.stdout == proc.stderr == ""


def test_the_makefile_and_ci_use_the_same_setup():
    makefile = (REPO / "Makefile").read_text()
    assert "./scripts/system-deps.sh test" in makefile and "./scripts/system-deps.sh containers" in makefile
    ci = (REPO / ".ci" / "run").read_text()
    assert "apt-get" not in ci and "make test " in ci and "make test-containers " in ci


def test_an_image_built_from_a_source_archive_has_a_revision(tmp_path):
    """No .git: the label is a digest of the sources, the same for the same sources."""
    for name in ("src", "components", "pipelines", "images", "scripts"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "setup.py", "constraints.txt", "requirements-nodeps.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k not in ("LABPIPE_REVISION", "GIT_DIR")}
    env["GIT_CEILING_DIRECTORIES"] = str(tmp_path.parent)  # no repository above the archive either

    def revision() -> str:
        return subprocess.run(
            [str(tmp_path / "scripts" / "source-revision.sh")],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()

    first = revision()
    assert re.fullmatch(r"src-sha256-[0-9a-f]{12}", first) and revision() == first
    (tmp_path / "src" / "labpipe" / "cli.py").write_text("# changed\n")
    assert revision() != first
