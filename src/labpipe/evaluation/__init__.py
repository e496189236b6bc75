"""MT-Bench evaluation: answers, judging, aggregation, branch comparison, checkpoint selection, gate, reports.

The reference is FastChat's `fastchat/llm_judge` (Zheng et al., 2023): its question file, judge prompts,
reference answers, rating parser and `show_result.py` aggregation, and its answer/judgment file formats.
"""
