"""What the taxonomy stages' configs can say about themselves before anything runs (preflight)."""

from __future__ import annotations

from labpipe.errors import Problem
from labpipe.paramcheck import in_range, one_of, problem
from labpipe.registry import production as prod
from labpipe.taxonomy.stage import SeedExtractionConfig, TaxonomyDiffConfig


def diff_problems(cfg: TaxonomyDiffConfig) -> list[Problem]:
    found = one_of("scope", cfg.scope, prod.SCOPES)
    if cfg.base == prod.PRODUCTION_BASE and not cfg.production_model_name:
        found.append(
            problem(
                "production_model_name",
                "base=production needs a registered model name",
                "pass production_model_name=labpipe-model",
            )
        )
    return found


def seed_problems(cfg: SeedExtractionConfig) -> list[Problem]:
    return in_range("chunk_tokens", cfg.chunk_tokens, 16, 1_000_000) + in_range(
        "shards", cfg.shards, 1, 10_000
    )
