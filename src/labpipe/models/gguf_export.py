"""Write a Llama-architecture Hugging Face model directory as one GGUF file (llama.cpp's format).

    labpipe model to-gguf --model tiny/ --out tiny.gguf

Enough for the tiny model and other small Llama models with a byte-level BPE tokenizer (GPT-2 style):
what the tests need to serve the tiny model with llama.cpp's server (the `xllamacpp` wheel). Weights are
written as float32. llama.cpp's own `convert_hf_to_gguf.py` covers every architecture but is not on
PyPI; this is the short path for one architecture, with the `gguf` package's writer.

Two details decide whether llama.cpp computes the same function as transformers:
- llama.cpp's rotary embedding pairs adjacent dimensions, transformers' pairs the two halves, so the
  q and k projections are permuted per head (as llama.cpp's converter does);
- the chat template's `{% generation %}` markers (for trl's assistant-only loss) are removed:
  llama.cpp's template engine does not know them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from labpipe.errors import Problem, UserError

_GENERATION_TAGS = re.compile(r"\{%-?\s*(end)?generation\s*-?%\}")


def _permute(weights, n_head: int):
    """HF's half-split rotary layout -> llama.cpp's interleaved one (per head)."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _problem(where: str, message: str, fix: str) -> UserError:
    return UserError(Problem(where, "gguf-export", message, fix))


def export_gguf(model_dir: str | Path, out: str | Path) -> Path:
    """Convert `model_dir` (LlamaForCausalLM + tokenizer.json) to the GGUF file `out`; returns `out`."""
    try:
        import gguf
    except ImportError:
        raise _problem("gguf", "the `gguf` package is not installed", "pip install gguf") from None
    import numpy as np
    from safetensors.numpy import load_file

    from labpipe.storage import atomic_path

    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise _problem(str(model_dir), "no config.json here", "pass a Hugging Face model directory")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("model_type") != "llama":
        raise _problem(
            str(config_path),
            f"model_type {config.get('model_type')!r} is not supported (only llama)",
            "use llama.cpp's convert_hf_to_gguf.py for other architectures",
        )
    tok_json = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if (tok_json.get("model") or {}).get("type") != "BPE":
        raise _problem(str(model_dir / "tokenizer.json"), "only byte-level BPE tokenizers are supported", "")
    tok_config_path = model_dir / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text(encoding="utf-8")) if tok_config_path.is_file() else {}
    template = tok_config.get("chat_template") or ""
    if not template and (model_dir / "chat_template.jinja").is_file():
        template = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")

    tensors: dict = {}
    for shard in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(str(shard)))
    if not tensors:
        raise _problem(str(model_dir), "no *.safetensors weights here", "save the model with safetensors")

    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    hidden = config["hidden_size"]
    head_dim = config.get("head_dim") or hidden // n_head
    rope = config.get("rope_parameters") or {}
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))

    vocab = tok_json["model"]["vocab"]
    added = {t["content"]: t["id"] for t in tok_json.get("added_tokens", [])}
    size = max([*vocab.values(), *added.values()]) + 1
    size = max(size, config.get("vocab_size", size))
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for text, i in vocab.items():
        tokens[i], types[i] = text, gguf.TokenType.NORMAL
    for text, i in added.items():
        tokens[i], types[i] = text, gguf.TokenType.CONTROL
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok_json["model"].get("merges", [])]

    out = Path(out)
    with atomic_path(out) as tmp:
        writer = gguf.GGUFWriter(str(tmp), "llama")
        writer.add_name(model_dir.name)
        writer.add_context_length(config.get("max_position_embeddings", 2048))
        writer.add_embedding_length(hidden)
        writer.add_block_count(config["num_hidden_layers"])
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_kv)
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(float(theta))
        writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
        writer.add_vocab_size(size)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        for key, setter in (
            ("bos_token_id", writer.add_bos_token_id),
            ("eos_token_id", writer.add_eos_token_id),
            ("pad_token_id", writer.add_pad_token_id),
        ):
            if isinstance(config.get(key), int):
                setter(config[key])
        writer.add_add_bos_token(False)
        if template:
            writer.add_chat_template(_GENERATION_TAGS.sub("", template))

        def put(name: str, value) -> None:
            writer.add_tensor(name, np.ascontiguousarray(value, dtype=np.float32))

        put("token_embd.weight", tensors["model.embed_tokens.weight"])
        put("output_norm.weight", tensors["model.norm.weight"])
        if "lm_head.weight" in tensors and not config.get("tie_word_embeddings"):
            put("output.weight", tensors["lm_head.weight"])
        for i in range(config["num_hidden_layers"]):
            p = f"model.layers.{i}."
            put(f"blk.{i}.attn_norm.weight", tensors[p + "input_layernorm.weight"])
            put(f"blk.{i}.attn_q.weight", _permute(tensors[p + "self_attn.q_proj.weight"], n_head))
            put(f"blk.{i}.attn_k.weight", _permute(tensors[p + "self_attn.k_proj.weight"], n_kv))
            put(f"blk.{i}.attn_v.weight", tensors[p + "self_attn.v_proj.weight"])
            put(f"blk.{i}.attn_output.weight", tensors[p + "self_attn.o_proj.weight"])
            put(f"blk.{i}.ffn_norm.weight", tensors[p + "post_attention_layernorm.weight"])
            put(f"blk.{i}.ffn_gate.weight", tensors[p + "mlp.gate_proj.weight"])
            put(f"blk.{i}.ffn_up.weight", tensors[p + "mlp.up_proj.weight"])
            put(f"blk.{i}.ffn_down.weight", tensors[p + "mlp.down_proj.weight"])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out
