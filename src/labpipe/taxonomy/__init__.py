"""The taxonomy stages: qna.yaml validation (InstructLab v1-v3), taxonomy diff, seed extraction.

Entry points: `labpipe.taxonomy.stage.run_taxonomy_diff` / `run_seed_extraction`; the seed-record
schema is in README.md next to this file.
"""
