"""The failure policy of a stage's model requests (docs/model-servers.md, "Failed requests"): how many
requests may fail for good, which failure kinds are transient, and what is reported about them."""

from __future__ import annotations

from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.llm.types import ClientStats

# The failure policy (docs/model-servers.md, "Failed requests"). A stage tolerates this share of requests
# that failed for good: a teacher that fails one request in hundreds (a dropped reply, one prompt too long
# for its context) costs a few examples, not a weekly run; 2% is well above that rate and well below what a
# systematic fault (a wrong context length, an unsupported dialect, a broken leaf) fails, which then stops
# the stage with the grouped reasons. The tolerated failures are reported (stage view, manifest, MLflow,
# run report) and a rerun with the same output resends only them.
DEFAULT_MAX_FAILED_SHARE = 0.02
# Failure kinds a retry of the whole task may fix (the server was down, overloaded or slow); every other
# kind (context length, a rejected request, a reply that stayed unusable) fails the same way again.
TRANSIENT_KINDS = ("rate_limit", "overloaded", "server_error", "timeout", "connection", "bad_response")


def failure_summary(stats: ClientStats, total: int, max_failed_share: float) -> dict[str, Any]:
    """What a stage reports about its failed requests: how many of how many, the allowed share, and the
    reasons by kind (count and one full example each). For manifests, MLflow and the run report."""
    failed = sum(stats.failures.values())
    return {
        "failed": failed,
        "total": total,
        "allowed_share": max_failed_share,
        "tolerated": failed if failed <= max_failed_share * total else 0,
        "reasons": {
            kind: {"count": n, "example": stats.failure_examples.get(kind, "")}
            for kind, n in stats.failures.most_common()
        },
    }


def check_failures(
    stats: ClientStats, total: int, *, max_failed_share: float, stage: str, where: str, fix: str = ""
) -> None:
    """Raise UserError when more than `max_failed_share` of `total` requests failed for good.

    The message groups the failures by kind, with counts and the server's full reason for each kind, so
    the stage fails with what went wrong instead of handing a short data set to the next stage. The error
    is `transient` (a retried task tries again) only when the failures of deterministic kinds alone stay
    within the allowed share: then a retry that gets past the server's trouble can succeed.
    """
    failed = sum(stats.failures.values())
    allowed = max_failed_share * total
    if failed == 0 or failed <= allowed:
        return
    deterministic = sum(n for kind, n in stats.failures.items() if kind not in TRANSIENT_KINDS)
    reasons = "; ".join(
        f"{n} {kind} (e.g. {stats.failure_examples.get(kind, '')!r})"
        for kind, n in stats.failures.most_common()
    )
    raise UserError(
        Problem(
            where,
            "requests-failed",
            f"{failed} of {total} {stage} requests failed after all retries "
            f"(allowed: {max_failed_share:.0%}): {reasons}",
            fix
            or "fix the cause above and rerun with the same output directory: only the failed requests are sent again",
            field="max_failed_share",
        ),
        transient=deterministic <= allowed,
    )
