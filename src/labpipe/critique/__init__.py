"""Critique: judge scores, thresholds, format and length checks, near-duplicate removal, the yield
report, and mixing of the kept records into the knowledge-phase and skills-phase training sets."""
