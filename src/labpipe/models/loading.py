"""Load a Hugging Face causal LM and its tokenizer from a local directory or an s3:// prefix.

s3:// models are downloaded once (verified, cached by URI) through labpipe.storage.materialize_dir.
torch and transformers are imported inside the functions: this module is cheap to import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.storage import is_s3, materialize_dir

TRAINING_OUTPUT_MODEL = "model"  # a training output directory holds its final model here
# What AutoTokenizer reads (config.json: the tokenizer class of configs that do not name it).
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "tokenizer.model",
        "spiece.model",
        "sentencepiece.bpe.model",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "chat_template.jinja",
        "chat_template.json",
        "config.json",
    }
)


def is_tokenizer_file(relative: str) -> bool:
    """A tokenizer file of a model directory or of a training output's final model (not weights,
    not checkpoints)."""
    parent, _, name = relative.rpartition("/")
    return name in TOKENIZER_FILES and parent in ("", TRAINING_OUTPUT_MODEL)


def tokenizer_dir(uri: str | Path) -> Path:
    """A local directory holding the tokenizer of the model at `uri`. For s3:// only the tokenizer
    files are downloaded (cached by URI), never the weights."""
    if not is_s3(str(uri)):
        return resolve_model_dir(uri)
    path = materialize_dir(str(uri), kind="tokenizers", include=is_tokenizer_file)
    if (path / TRAINING_OUTPUT_MODEL / "config.json").is_file():
        path = path / TRAINING_OUTPUT_MODEL
    if not any((path / name).is_file() for name in TOKENIZER_FILES - {"config.json"}):
        raise UserError(
            Problem(
                where=str(uri),
                rule="tokenizer",
                message="no tokenizer files (tokenizer.json, tokenizer_config.json, ...) under this prefix",
                fix="save the tokenizer next to the model (tokenizer.save_pretrained)",
            )
        )
    return path


def resolve_model_dir(uri: str | Path) -> Path:
    """A local directory holding the model at `uri`: the path itself, a cached download, or, for a
    training output directory (model/, checkpoints/), its final model."""
    path = materialize_dir(str(uri), kind="models")
    if (path / TRAINING_OUTPUT_MODEL / "config.json").is_file():
        path = path / TRAINING_OUTPUT_MODEL
    if not (path / "config.json").is_file():
        raise UserError(
            Problem(
                where=str(uri),
                rule="model-dir",
                message="no config.json: not a Hugging Face model directory",
                fix="pass a directory written by save_pretrained (or `labpipe model init-tiny --out DIR`)",
            )
        )
    return path


def load_tokenizer(uri: str | Path, *, padding_side: str = "left", require_chat_template: bool = True):
    """The tokenizer at `uri`, with a pad token (EOS when it has none) and the given padding side."""
    from transformers import AutoTokenizer

    path = resolve_model_dir(uri)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UserError(
            Problem(
                where=str(uri),
                rule="tokenizer",
                message=f"cannot load the tokenizer ({exc})",
                fix="save the tokenizer next to the model (tokenizer.save_pretrained)",
            )
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    if require_chat_template and not tokenizer.chat_template:
        raise UserError(
            Problem(
                where=str(uri),
                rule="chat-template",
                field="chat_template",
                message="the tokenizer has no chat template",
                fix="use an instruction-tuned model, or set tokenizer.chat_template and save it",
            )
        )
    return tokenizer


def load_model(uri: str | Path, *, dtype: Any = None, device: str | None = None):
    """The causal LM at `uri`, in eval mode (float32 on CPU unless `dtype` says otherwise)."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model_dir(uri)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    except (OSError, ValueError) as exc:
        raise UserError(
            Problem(
                where=str(uri),
                rule="model-dir",
                message=f"cannot load the model ({exc})",
                fix="pass a directory written by save_pretrained",
            )
        ) from None
    if device:
        model.to(device)
    return model.eval()


def load_model_and_tokenizer(
    uri: str | Path, *, dtype: Any = None, device: str | None = None, padding_side: str = "left"
):
    """(model, tokenizer) for generation: left padding, pad token set."""
    return load_model(uri, dtype=dtype, device=device), load_tokenizer(uri, padding_side=padding_side)
