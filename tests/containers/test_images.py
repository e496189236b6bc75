"""Each image installs what its components import, runs as an arbitrary UID, and carries its labels and data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labpipe.evaluation import sources
from tests.support.container_runner import ARBITRARY_UID, _executors, podman
from tests.support.imports import third_party_imports

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import importlib.metadata as md, importlib.util, json, sys
mods = sys.argv[1:]
found = {m: importlib.util.find_spec(m) is not None for m in mods}
dists = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in md.distributions()}
print(json.dumps({"found": found, "dists": dists}))
"""


def in_image(image: str, *cmd: str, network: str = "none") -> str:
    proc = podman("run", "--rm", "--pull=never", f"--user={ARBITRARY_UID}", f"--network={network}", image, *cmd,
                  check=False)
    assert proc.returncode == 0, f"{image}: {' '.join(cmd)[:120]} failed:\n{proc.stdout[-3000:]}"
    return proc.stdout


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_each_image_installs_what_its_components_import(compiled_yaml):
    """Static imports of every task (its code, through labpipe) vs the distributions installed in its image."""
    import importlib.metadata as md

    host_dists = md.packages_distributions()  # module -> distributions, in the tested environment
    pins = _pins()
    by_image: dict[str, set[str]] = {}
    for executor in _executors(compiled_yaml).values():
        if "labpipe-evaluation-gpu:" in executor["container"]["image"]:
            continue  # vLLM + CUDA: not built here (build-images.sh --no-gpu-evaluation); its pin: tests/unit
        source = executor["container"]["command"][-1]  # the component's code, as compiled
        by_image.setdefault(executor["container"]["image"], set()).update(third_party_imports(source))
    assert len(by_image) == 4, sorted(by_image)
    for image, modules in sorted(by_image.items()):
        assert {"kfp", "mlflow", "yaml"} <= modules  # the analysis found the imports at all
        report = json.loads(in_image(image, "python", "-c", PROBE, *sorted(modules)).strip().splitlines()[-1])
        missing = sorted(m for m, ok in report["found"].items() if not ok)
        assert not missing, f"{image} lacks modules its components import: {missing}"
        for module in modules:
            for dist in host_dists.get(module, []):
                key = dist.lower().replace("_", "-")
                assert key in report["dists"], f"{image}: {module} -> distribution {dist} not installed"
                want = pins.get(key)
                if want:  # the image holds the tested version (constraints.txt), CPU/CUDA local tags aside
                    assert report["dists"][key].split("+")[0] == want, (image, dist, report["dists"][key], want)


def test_generation_image_has_xgrammar_and_taxonomy_image_has_git(image_prefix):
    registry, tag = image_prefix
    out = in_image(f"{registry}/labpipe-generation:{tag}", "python", "-c",
                   "import importlib.metadata, xgrammar, xgrammar.contrib.hf; "
                   "xgrammar.Grammar.from_json_schema('{\"type\": \"object\"}'); "
                   "print(importlib.metadata.version('xgrammar'))")
    assert out.strip().splitlines()[-1] == _pins()["xgrammar"]
    assert "git version" in in_image(f"{registry}/labpipe-taxonomy:{tag}", "git", "--version")


@pytest.mark.parametrize("stage", ["taxonomy", "generation", "training", "evaluation"])
def test_arbitrary_uid_writes_home_and_every_cache(image_prefix, stage):
    registry, tag = image_prefix
    script = ('set -e; id -u; id -g; test "$(id -u)" = 1000650000; '
              'for d in "$HOME" "$XDG_CACHE_HOME" "$PIP_CACHE_DIR" "$HF_HOME" "$TRITON_CACHE_DIR" "$MPLCONFIGDIR" '
              '"$LABPIPE_CACHE"; do test -n "$d"; touch "$d/.w" && rm "$d/.w"; echo "ok $d"; done; '
              'python -m pip --version; python -c "import matplotlib.pyplot"')
    out = in_image(f"{registry}/labpipe-{stage}:{tag}", "sh", "-c", script)
    assert out.count("ok /") == 7, out
    assert "not writable" not in out and "Matplotlib created a temporary cache" not in out, out


def _source_revision() -> str:
    import subprocess

    script = Path(__file__).resolve().parents[2] / "scripts" / "source-revision.sh"
    return subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("stage", ["taxonomy", "generation", "training", "evaluation"])
def test_oci_labels_and_non_root_default_user(image_prefix, stage):
    registry, tag = image_prefix
    info = json.loads(podman("image", "inspect", f"{registry}/labpipe-{stage}:{tag}").stdout)[0]
    labels = info["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == f"labpipe-{stage}"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    # the git commit built, or in a source archive (no .git) a digest of its sources: never "unknown"
    assert labels["org.opencontainers.image.revision"] == _source_revision()
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert info["Config"]["User"] not in ("", "0", "root")


def test_evaluation_image_bakes_the_pinned_mt_bench_data(image_prefix):
    registry, tag = image_prefix
    script = ('cd "$LABPIPE_MT_BENCH_DATA" && sha256sum question.jsonl judge_prompts.jsonl '
              'reference_answer/gpt-4.jsonl')
    out = in_image(f"{registry}/labpipe-evaluation:{tag}", "sh", "-c", script)
    sums = {line.split()[1]: line.split()[0] for line in out.strip().splitlines()}
    for pinned in (sources.QUESTIONS, sources.JUDGE_PROMPTS, sources.REFERENCE_ANSWERS):
        assert sums[pinned.name] == pinned.sha256
    # no network, no questions parameter: the library finds the baked copy
    out = in_image(f"{registry}/labpipe-evaluation:{tag}", "python", "-c",
                   "from labpipe.evaluation.questions import load_questions; q, d = load_questions(''); "
                   "print(len(q), d)")
    assert out.strip().splitlines()[-1] == f"80 {sources.QUESTIONS.sha256}"


def test_the_build_ca_bundle_is_in_no_layer(image_prefix):
    """--ca-bundle is a build secret: the host bundle's extra CAs (the proxy's) appear nowhere in the image."""
    registry, tag = image_prefix
    host = Path("/etc/ssl/certs/ca-certificates.crt").read_text()
    image = in_image(f"{registry}/labpipe-base:{tag}", "cat", "/etc/ssl/certs/ca-certificates.crt")
    blocks = [b for b in host.split("-----END CERTIFICATE-----") if "BEGIN CERTIFICATE" in b]
    extra = [b.split("-----BEGIN CERTIFICATE-----")[1].split()[4:6] for b in blocks if b.strip() not in image]
    if not extra:
        pytest.skip("the build host's CA bundle has no CA beyond the image's own: nothing to look for")
    probe = extra[-1][1]  # a base64 line (inside the key) of a host-only CA
    out = podman("run", "--rm", "--pull=never", "--network=none", f"{registry}/labpipe-base:{tag}", "sh", "-c",
                 f"grep -rlF -- '{probe}' /etc /opt /usr/lib/ssl /run 2>/dev/null || true").stdout
    assert out.strip() == "", f"the build CA bundle was stored in the image: {out}"
