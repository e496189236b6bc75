"""`labpipe taxonomy validate | diff` and `labpipe seeds`: the taxonomy stages from the command line."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    taxonomy = sub.add_parser("taxonomy", help="validate a taxonomy, list its changed leaves")
    actions = taxonomy.add_subparsers(dest="taxonomy_command", metavar="ACTION")

    validate = actions.add_parser("validate", help="validate every leaf (InstructLab qna.yaml v1-v3 rules)")
    validate.add_argument("--taxonomy", default=".", help="taxonomy directory (default: current directory)")
    validate.add_argument("--foundational", action="store_true", help="also validate foundational_skills/")
    validate.set_defaults(func=validate_cmd)

    diff = actions.add_parser("diff", help="leaves changed against a base ref (InstructLab semantics)")
    diff.add_argument("--taxonomy", default=".", help="taxonomy directory (default: current directory)")
    diff.add_argument("--base", default="origin/main", help="ref to diff against, or 'empty' for every leaf")
    diff.add_argument("--json", action="store_true", help="print the diff as JSON")
    diff.set_defaults(func=diff_cmd)

    seeds = sub.add_parser("seeds", help="seed records (JSONL) from the changed leaves of a taxonomy")
    seeds.add_argument(
        "--taxonomy", default=".", help="taxonomy directory or git URL (default: current directory)"
    )
    seeds.add_argument("--base", default="origin/main", help="ref to diff against, or 'empty' for every leaf")
    seeds.add_argument("--out", required=True, help="JSONL file to write")
    seeds.add_argument(
        "--tokenizer", default="", help="model dir or s3:// URI whose tokenizer budgets chunks"
    )
    seeds.add_argument("--chunk-tokens", type=int, default=1000, help="token budget of a document chunk")
    seeds.set_defaults(func=seeds_cmd)


def _print_warnings(problems) -> None:
    import sys

    for problem in problems:
        print(str(problem), file=sys.stderr)


def validate_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    from labpipe.errors import Problem, UserError
    from labpipe.taxonomy.validate import validate_taxonomy

    report = validate_taxonomy(args.taxonomy, foundational=args.foundational)
    report.raise_for_errors()
    if report.checked == 0 and not any(Path(args.taxonomy).rglob("qna.yaml")):  # a wrong folder: no taxonomy
        where = Path(args.taxonomy).absolute()
        raise UserError(Problem(where=str(where), rule="taxonomy", field="taxonomy",
                                message="no qna.yaml found: this folder holds no taxonomy",
                                fix="pass the taxonomy's root folder with --taxonomy DIR (it holds knowledge/ "
                                    "and compositional_skills/)"))
    _print_warnings(report.warnings)
    print(f"{report.checked} leaves checked, {len(report.leaves)} valid, {len(report.warnings)} warnings")
    return 0


def diff_cmd(args: argparse.Namespace) -> int:
    import json

    from labpipe.taxonomy.diff import taxonomy_diff
    from labpipe.taxonomy.validate import validate_taxonomy

    diff = taxonomy_diff(args.taxonomy, args.base)
    report = validate_taxonomy(args.taxonomy, paths=[c.path for c in diff.changed])
    report.problems = diff.warnings + report.problems
    if args.json:
        doc = diff.to_json()
        doc["problems"] = [str(p) for p in report.problems]
        print(json.dumps(doc, indent=2))
    else:
        print(diff.describe_base())
        for change in diff.changes:
            renamed = f" (from {change.old_path})" if change.old_path else ""
            print(f"{change.status:<10} {change.path}{renamed}")
        if not diff.changes:
            print("no changed leaves")
    report.raise_for_errors()
    _print_warnings(report.warnings)
    return 0


def seeds_cmd(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from labpipe.taxonomy.stage import (
        SeedExtractionConfig,
        TaxonomyDiffConfig,
        run_seed_extraction,
        run_taxonomy_diff,
    )

    with tempfile.TemporaryDirectory(prefix="labpipe-diff-") as tmp:
        diff_dir = str(Path(tmp) / "diff")
        run_taxonomy_diff(TaxonomyDiffConfig(taxonomy=args.taxonomy, out=diff_dir, base=args.base))
        meta = run_seed_extraction(
            SeedExtractionConfig(
                diff=diff_dir, out=args.out, tokenizer=args.tokenizer, chunk_tokens=args.chunk_tokens
            )
        )
    print(f"{meta['records']} seed records ({meta['chunks']} document chunks) written to {args.out}")
    return 0
