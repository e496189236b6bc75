"""Split document text into chunks of at most `budget` tokens: as few chunks as the budget allows,
evenly filled, each cut on the strongest boundary available near the even split.

Boundaries, strongest first: blank lines (paragraphs), line breaks, sentence ends, spaces. Tokens are
counted with the tokenizer of the model in use when one is given (a model directory or s3:// URI:
only its tokenizer files are fetched), else with `labpipe.taxonomy.schema.approx_tokens` (one token
per word or punctuation mark).

How: the document is tokenized once, and the tokens starting between two candidate cuts (the starts
of whitespace runs), plus what the chunk's first word costs more without its leading space, are
what a chunk costs: exact for tokenizers that split on whitespace before merging (byte-level BPE),
unlike joined pieces counted one by one (a BPE tokenizer merges across the joint, and a word costs
differently with and without its leading space). With these costs:
1. the number of chunks is the fewest that hold the text when each leaves room for half a typical
   sentence of the document, or 10% of the budget if more (backward greedy over word boundaries:
   optimal for additive costs). It never grows with the budget, and no chunk is split further than
   the budget demands (no one-word chunks); the room lets the cuts fall on sentence ends;
2. a forward pass cuts each chunk, within the full budget, at a position from which the rest still
   fits in the chunks left, preferring the strongest boundary within a quarter budget of an even
   split of what remains, so chunks are evenly full and never a small fragment.
Every chunk is finally counted as text on its own and pulled back a word if it overflows. A single
word longer than the budget stays whole.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable

from labpipe.taxonomy.schema import _TOKEN, approx_tokens

Counter = Callable[[str], int]
_CUT = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
TOLERANCE = 0.25  # of the budget: how far from an even split a stronger boundary may move a cut
SLACK = 0.1  # the least room per chunk (of the budget) kept for moving cuts to sentence ends


class TokenCounter:
    """Counts the tokens of a text (`counter(text)`) and says where each token starts (`starts`)."""

    def __init__(self, count: Counter, starts: Callable[[str], list[int]] | None = None):
        self.count = count
        self._starts = starts

    def __call__(self, text: str) -> int:
        return self.count(text)

    def starts(self, text: str) -> list[int]:
        """Character offset at which each token of `text` starts (sorted)."""
        if self._starts is not None:
            return self._starts(text)
        # a plain counting function: count each word with its leading whitespace (additive estimate)
        out: list[int] = []
        prev = 0
        for m in _CUT.finditer(text):
            if m.start() > prev:
                out += [prev] * self.count(text[prev : m.start()])
            prev = m.start()
        out += [prev] * self.count(text[prev:])
        return out


APPROX = TokenCounter(approx_tokens, lambda text: [m.start() for m in _TOKEN.finditer(text)])


def token_counter(tokenizer: str = "") -> TokenCounter:
    """Tokens as the tokenizer at `tokenizer` (path or s3:// URI) counts them, or the approximation."""
    if not tokenizer:
        return APPROX
    from transformers import AutoTokenizer

    from labpipe.models.loading import tokenizer_dir

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir(tokenizer)))
    backend = getattr(tok, "backend_tokenizer", None)  # a fast tokenizer: offsets in one pass

    def count(text: str) -> int:
        if backend is not None:
            return len(backend.encode(text, add_special_tokens=False).ids)
        return len(tok.encode(text, add_special_tokens=False, verbose=False))

    def starts(text: str) -> list[int]:
        if backend is not None:
            return [s for s, _ in backend.encode(text, add_special_tokens=False).offsets]
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [s for s, _ in enc["offset_mapping"]]

    return TokenCounter(count, starts if backend is not None or tok.is_fast else None)


def chunk_text(text: str, budget: int, count: Counter = APPROX) -> list[str]:
    """Chunks of `text`, each at most `budget` tokens (a single word longer than that stays whole)."""
    if budget < 1:
        raise ValueError("budget must be at least 1 token")
    text = text.strip()
    if not text:
        return []
    counter = count if isinstance(count, TokenCounter) else TokenCounter(count)
    starts = counter.starts(text)
    if len(starts) <= budget and counter(text) <= budget:
        return [text]
    cuts, strength = _cuts(text)
    # tokens[i]: tokens starting before cuts[i]; a chunk cuts[i]..cuts[j] costs tokens[j] - tokens[i]
    tokens = [bisect_left(starts, c) for c in cuts]
    tokens[-1] = len(starts)
    last = len(cuts) - 1
    extra: dict[int, int] = {0: 0}

    def head(i: int) -> int:  # what the first word costs more at the start of a chunk (no leading space)
        if i not in extra:
            word = text[cuts[i] : cuts[i + 1]].strip()
            extra[i] = max(0, counter(word) - (tokens[i + 1] - tokens[i]))
        return extra[i]

    def reach(i: int) -> int:  # farthest cut that keeps the chunk from cut i within budget
        return max(i + 1, bisect_right(tokens, tokens[i] + budget - head(i)) - 1)

    def backward(limit: int) -> list[int]:
        """chain[m]: the earliest cut from which m chunks of at most `limit` tokens cover the rest."""
        chain = [last]
        while chain[-1] > 0:
            j = chain[-1]
            i = bisect_left(tokens, tokens[j] - limit)
            while i < j - 1 and tokens[j] - tokens[i] + head(i) > limit:
                i += 1
            chain.append(min(i, j - 1))
        return chain

    # As many chunks as it takes when each leaves room for half a typical sentence (what packing
    # whole sentences wastes on average) or 10% of the budget: the room lets cuts fall on sentence
    # ends, and as the room does not depend on the budget, the count never grows with it. The cuts
    # themselves use the full budget.
    room = max(int(budget * SLACK), _median_sentence(tokens, strength) // 2)
    remaining = len(backward(max(1, budget - room))) - 1
    chain = backward(budget)
    chunks: list[str] = []
    pos = 0
    while pos < last:
        if remaining <= 1:
            cut = last
        else:
            lo, hi = chain[min(remaining - 1, len(chain) - 1)], reach(pos)
            cut = _best_cut(pos, max(pos + 1, min(lo, hi)), hi, tokens, strength, budget, remaining)
        while cut > pos + 1 and counter(text[cuts[pos] : cuts[cut]].strip()) > budget:
            cut -= 1  # the chunk on its own costs a token or two more than its share: one word less
        chunks.append(text[cuts[pos] : cuts[cut]].strip())
        pos = cut
        remaining -= 1
    return chunks


def _cuts(text: str) -> tuple[list[int], list[int]]:
    """Candidate cut positions (0, the start of every whitespace run, the end) and their strength."""
    cuts, strength = [0], [4]
    for m in _CUT.finditer(text):
        space = m.group()
        if "\n" in space and "\n" in space[space.index("\n") + 1 :]:
            level = 3  # a blank line: paragraph
        elif "\n" in space:
            level = 2
        elif _SENTENCE_END.search(text[max(0, m.start() - 4) : m.start()]):
            level = 1
        else:
            level = 0
        cuts.append(m.start())
        strength.append(level)
    cuts.append(len(text))
    strength.append(4)
    return cuts, strength


def _median_sentence(tokens: list[int], strength: list[int]) -> int:
    ends = [t for t, level in zip(tokens, strength, strict=True) if level >= 1]
    lengths = sorted(b - a for a, b in zip(ends, ends[1:], strict=False) if b > a)
    return lengths[len(lengths) // 2] if lengths else 0


def _best_cut(
    pos: int, lo: int, hi: int, tokens: list[int], strength: list[int], budget: int, need: int
) -> int:
    """The cut in [lo, hi] on the strongest boundary near an even split of the rest into `need`."""
    target = tokens[pos] + (tokens[-1] - tokens[pos]) / need
    window = TOLERANCE * budget
    best, best_key = hi, None
    for j in range(lo, hi + 1):
        off = abs(tokens[j] - target)
        near = off <= window
        key = (near, strength[j] if near else 0, -off)  # none near: the cut closest to the even split
        if best_key is None or key > best_key:
            best, best_key = j, key
    return best
