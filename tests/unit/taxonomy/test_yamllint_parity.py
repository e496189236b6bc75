"""The one-pass style checker reports what InstructLab's yamllint profile reports, on real leaves."""

from __future__ import annotations

import pytest

from labpipe.taxonomy.yamlcheck import parse_yaml

yamllint_config = pytest.importorskip("yamllint.config")
yamllint_linter = pytest.importorskip("yamllint.linter")

INSTRUCTLAB_PROFILE = "{extends: relaxed, rules: {line-length: {max: 120}}}"


def test_same_problems_as_yamllint_on_real_taxonomy_files(shared_data):
    conf = yamllint_config.YamlLintConfig(INSTRUCTLAB_PROFILE)
    files = sorted((shared_data / "taxonomy").rglob("qna.yaml"))
    assert len(files) > 400
    ours, theirs = set(), set()
    for path in files:
        text = path.read_text()
        mine = [(int(p.where.split(":")[1]), p.rule) for p in parse_yaml(text, "f").problems]
        # after a syntax error yamllint keeps checking tokens; we stop at the error: compare up to it
        last = min([line for line, rule in mine if rule == "syntax"], default=10**9)
        ours |= {(str(path), line, rule) for line, rule in mine if line <= last}
        theirs |= {
            (str(path), p.line, p.rule or "syntax") for p in yamllint_linter.run(text, conf) if p.line <= last
        }
    assert len(theirs) > 400  # the real data has hundreds of style problems
    assert ours == theirs
