"""`labpipe model to-gguf`: the tiny model as one GGUF file (served by llama.cpp in tests/integration/real_servers,
where its next-token log-probabilities are checked against transformers')."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

gguf = pytest.importorskip("gguf", reason="pip install gguf (scripts/setup-env.sh installs it)")


def test_cli_writes_a_gguf_llama_cpp_can_read(tiny_model, tmp_path):
    out = tmp_path / "tiny.gguf"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "labpipe.cli",
            "model",
            "to-gguf",
            "--model",
            str(tiny_model),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    reader = gguf.GGUFReader(str(out))
    names = {t.name for t in reader.tensors}
    config = json.loads((tiny_model / "config.json").read_text())
    assert {
        "token_embd.weight",
        "output_norm.weight",
        "blk.0.attn_q.weight",
        "blk.1.ffn_down.weight",
    } <= names
    assert len(names) == 2 + 9 * config["num_hidden_layers"]  # tied embeddings: no output.weight
    fields = reader.fields
    arch = bytes(fields["general.architecture"].parts[-1]).decode()
    template = bytes(fields["tokenizer.chat_template"].parts[-1]).decode()
    assert arch == "llama" and "{% generation %}" not in template and "endgeneration" not in template
    assert "<|assistant|>" in template
    assert int(fields["llama.block_count"].parts[-1][0]) == config["num_hidden_layers"]


def test_a_model_that_is_not_llama_is_a_user_error(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "labpipe.cli",
            "model",
            "to-gguf",
            "--model",
            str(tmp_path / "m"),
            "--out",
            str(tmp_path / "x.gguf"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "model_type 'gpt2' is not supported" in done.stderr and not (tmp_path / "x.gguf").exists()
