"""Packed, padding-free batches as the trainer feeds them: sequences never attend to each other."""

from __future__ import annotations

import torch


def test_packed_logits_equal_separate_forwards(tiny_model):
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from labpipe.training.trainer import without_varlen_kwargs

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    seqs = [list(range(40, 90)), list(range(200, 130, -1)), list(range(7, 37))]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": s, "labels": s} for s in seqs]
    )
    inputs = without_varlen_kwargs(batch, model.config._attn_implementation)
    assert "cu_seq_lens_q" not in inputs and "position_ids" in inputs
    with torch.no_grad():
        packed = model(**inputs, use_cache=False).logits[0]  # the trainer passes use_cache=False too
        offset = 0
        for seq in seqs:
            alone = model(input_ids=torch.tensor([seq])).logits[0]
            assert (packed[offset : offset + len(seq)] - alone).abs().max() < 1e-4
            offset += len(seq)


def test_per_sequence_sdpa_equals_separate_forwards(tiny_model):
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from labpipe.training.trainer import PER_SEQUENCE_SDPA, use_per_sequence_attention, without_varlen_kwargs

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    seqs = [list(range(40, 90)), list(range(200, 130, -1)), list(range(7, 37))]
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([s])).logits[0] for s in seqs]
    assert use_per_sequence_attention(model) == "sdpa"
    assert model.config._attn_implementation == PER_SEQUENCE_SDPA
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": s, "labels": s} for s in seqs]
    )
    inputs = without_varlen_kwargs(batch, model.config._attn_implementation)
    assert "cu_seq_lens_q" in inputs
    with torch.no_grad():
        packed = model(**inputs, use_cache=False).logits[0]
    offset = 0
    for seq, logits in zip(seqs, alone, strict=True):
        assert (packed[offset : offset + len(seq)] - logits).abs().max() < 1e-4
        offset += len(seq)
    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == "sdpa"
