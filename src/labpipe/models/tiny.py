"""The tiny-model kit: a small Llama-architecture model and tokenizer built offline in seconds.

It is the embedded default base model, teacher and judge when no real ones are given, and the fixture
of every model test. The chat template wraps assistant content in {% generation %} ... {% endgeneration %}
so trl's assistant-only loss can mask everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labpipe.storage import atomic_dir

SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|end|>' }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# Text the tokenizer learns merges from: varied English and JSON so that prompts tokenize compactly.
_CORPUS = """
The taxonomy is a tree of question and answer examples written by people. A teacher model writes
new questions and answers from the seed examples, a judge rates them, and the student model is trained
first on knowledge and then on skills. Knowledge comes from documents: chapters, articles and reports.
{"question": "What is the capital of France?", "answer": "Paris is the capital of France.", "score": 3}
{"rating": 2, "rationale": "The answer is correct but incomplete.", "verdict": "keep"}
Write a short poem about the sea. Summarize the following text in three sentences. Explain why the sky
is blue. Translate this sentence into French. Solve for x: 2x + 3 = 11. The answer is x = 4.
Question: How many legs does a spider have? Answer: A spider has eight legs.
Rating: [[7]] The assistant's answer is helpful, relevant, accurate and detailed.
"""


@dataclass(frozen=True)
class TinyModelConfig:
    vocab_size: int = 1024
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 8192  # RoPE: free; fits teacher prompts + max_tokens
    seed: int = 0


def build_tokenizer(vocab_size: int = 1024):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|end|>",
        bos_token="<|endoftext|>",
        unk_token=None,
        model_max_length=8192,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(out: str | Path, config: TinyModelConfig | None = None) -> Path:
    """Write a tiny LlamaForCausalLM + tokenizer (+ chat template) to `out`; returns the directory.

    The directory appears only when complete (built in a temporary sibling, then renamed).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    cfg = config or TinyModelConfig()
    out = Path(out)
    tokenizer = build_tokenizer(cfg.vocab_size)
    torch.manual_seed(cfg.seed)
    model_cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(model_cfg)
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id
    )
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out
