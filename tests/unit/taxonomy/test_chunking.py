"""Chunks respect the token budget of the tokenizer in use, and split on the largest boundary that fits."""

from __future__ import annotations

from labpipe.taxonomy.chunking import chunk_text, token_counter
from labpipe.taxonomy.schema import approx_tokens

TEXT = "\n\n".join(
    f"Paragraph {p}. "
    + " ".join(f"Sentence {s} of paragraph {p} says something about tools." for s in range(6))
    for p in range(12)
)


def test_paragraphs_are_kept_whole_when_they_fit():
    chunks = chunk_text(TEXT, 200)
    assert all(approx_tokens(c) <= 200 for c in chunks)
    assert all(c.startswith("Paragraph") for c in chunks)  # split on blank lines only
    assert " ".join(" ".join(chunks).split()) == " ".join(TEXT.split())  # nothing lost or duplicated


def test_long_paragraphs_split_on_sentences():
    chunks = chunk_text(TEXT, 30)
    assert len(chunks) > 12 and all(approx_tokens(c) <= 30 for c in chunks)
    assert all(c.rstrip().endswith(".") for c in chunks)


def test_budget_in_tokens_of_the_model_tokenizer(tiny_model):
    count = token_counter(str(tiny_model))
    chunks = chunk_text(TEXT, 64, count)
    assert chunks and all(count(c) <= 64 for c in chunks)
    assert count(TEXT) != approx_tokens(TEXT)  # really the tokenizer, not the approximation


def test_empty_text_has_no_chunks():
    assert chunk_text("  \n\n ", 10) == []
