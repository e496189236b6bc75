"""The few git operations the taxonomy stages need, through the `git` command line.

Repositories may be remote URLs, local paths or file:// URLs. Git never prompts (GIT_TERMINAL_PROMPT=0),
so a repository that needs credentials fails fast with a message instead of hanging a pipeline step.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

_NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


class GitError(Exception):
    """A git command failed; `detail` is git's own first error line."""

    def __init__(self, args: list[str], detail: str):
        self.command = args[0] if args else ""
        self.detail = detail
        super().__init__(f"git {' '.join(args)}: {detail}")


def git(
    *args: str, cwd: str | Path | None = None, timeout: float = 900, env: dict[str, str] | None = None
) -> str:
    """Run git and return its stdout; raise GitError with git's message on failure."""
    env = {**os.environ, **_NO_PROMPT, **_credentials(), **(env or {})}
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise GitError(list(args), "the git command is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(list(args), f"timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]
        detail = next(
            (line for line in lines if line.startswith(("fatal:", "error:"))), lines[-1] if lines else ""
        )
        raise GitError(
            list(args),
            detail.removeprefix("fatal: ").removeprefix("error: ").strip() or f"exit code {proc.returncode}",
        )
    return proc.stdout.decode("utf-8", errors="surrogateescape")


def _credentials() -> dict[str, str]:
    """HTTP credentials from GIT_USERNAME / GIT_PASSWORD (a Kubernetes secret mounted as env), passed to git
    as an Authorization header through GIT_CONFIG_* variables: never in a URL, an argument or a log."""
    user, password = os.environ.get("GIT_USERNAME", ""), os.environ.get("GIT_PASSWORD", "")
    if not password:
        return {}
    import base64

    token = base64.b64encode(f"{user or 'git'}:{password}".encode()).decode()
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}"}


def work_tree_prefix(path: str | Path) -> str | None:
    """The path of `path` inside its git work tree ('' at the top), or None when it is not in one."""
    try:
        return git("rev-parse", "--show-prefix", cwd=path).strip()
    except (GitError, NotADirectoryError, FileNotFoundError):
        return None


def resolve(ref: str, cwd: str | Path) -> str | None:
    """The commit id `ref` names in the repository at `cwd`, or None."""
    try:
        return git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=cwd).strip() or None
    except GitError:
        return None


def is_remote_url(repo: str) -> bool:
    return "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo) is not None


def clone(url: str, dest: str | Path, *, ref: str = "") -> str:
    """Clone `url` into `dest` and check out `ref` (branch, tag or commit; default branch when empty).

    Returns the checked-out commit id. A commit that no branch reaches is fetched by id."""
    git("clone", "--quiet", *(["--no-checkout"] if ref else []), url, str(dest))
    if ref:
        commit = resolve(ref, dest) or resolve(f"origin/{ref}", dest)
        if commit is None and _SHA.match(ref):
            try:
                git("fetch", "--quiet", "origin", ref, cwd=dest)
                commit = resolve("FETCH_HEAD", dest)
            except GitError:
                commit = None
        if commit is None:
            raise GitError(["checkout", ref], f"'{ref}' is not a branch, tag or commit of {url}")
        git("checkout", "--quiet", "--detach", commit, cwd=dest)
    return git("rev-parse", "HEAD", cwd=dest).strip()


def is_bare(path: str | Path) -> bool:
    """A bare repository (a served git URL such as file:///srv/taxonomy.git): it must be cloned to be diffed."""
    try:
        return git("rev-parse", "--is-bare-repository", cwd=path).strip() == "true"
    except (GitError, NotADirectoryError, FileNotFoundError):
        return False


def is_shallow(cwd: str | Path) -> bool:
    try:
        return git("rev-parse", "--is-shallow-repository", cwd=cwd).strip() == "true"
    except GitError:
        return False


def ensure_commit(cwd: str | Path, commit: str, *, timeout: float = 300) -> str | None:
    """Make `commit` available in the clone at `cwd` (fetch it by id from origin when missing).

    Returns the full commit id, or None when neither the clone nor origin has it (a shallow clone that
    lacks it and a server that refuses fetching by id both end here)."""
    found = resolve(commit, cwd)
    if found:
        return found
    if not _SHA.match(commit):
        return None
    try:
        git("fetch", "--quiet", "origin", commit, cwd=cwd, timeout=timeout)
    except GitError:
        return None
    return resolve(commit, cwd)
