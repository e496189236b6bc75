"""The README's weekly `labpipe schedule` example is what the weekly scenario test runs: the same
parameters, nothing else overridden (base and scope stay at the pipeline's weekly defaults)."""

from __future__ import annotations

import re

from labpipe.pipelines.lab_pipeline import pipeline_parameters

from tests.conftest import REPO
from tests.e2e.test_weekly_scenario import CLUSTER_PARAMS


def _schedule_params() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    command = re.search(r"^labpipe schedule .*?(?=^\S|^```)", text, re.S | re.M)
    assert command, "no `labpipe schedule` example in the README"
    return dict(re.findall(r"--param (\w+)=(\S+)", command.group(0)))


def test_readme_schedule_example_is_the_scenario():
    params = _schedule_params()
    assert tuple(sorted(params)) == tuple(sorted(CLUSTER_PARAMS))
    assert params["taxonomy"].startswith("https://") and params["taxonomy"].endswith(".git")
    assert params["base_model"].startswith("s3://") and params["generation_cache"].startswith("s3://")
    assert params["checkpoint_root"].startswith("s3://")  # a killed training pod resumes
    defaults = pipeline_parameters()
    assert defaults["base"] == "production" and defaults["scope"] == "taxonomy"  # what the scenario relies on
