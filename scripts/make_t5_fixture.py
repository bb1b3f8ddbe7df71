"""Regenerate the golden T5 fixture in tests/fixtures/t5_tiny/ (chapter 04, text conditioning).

The fixture pins ivlib's Flax NNX T5 encoder (`ivlib/text.py`) to the reference implementation,
Hugging Face transformers' PyTorch `T5EncoderModel`, without needing torch in the test suite:
the test loads the safetensors written here into the NNX encoder and compares last hidden states.

What it writes (about 120 KB in all):
  config.json        a tiny random T5 v1.1 configuration (gated-GELU feed-forward)
  model.safetensors  its weights, as `T5EncoderModel.save_pretrained` names them
  reference.npz      input_ids (B, L) int32, attention_mask (B, L) int32 (1 = token, 0 = padding),
                     last_hidden_state (B, L, d_model) float32 from the PyTorch model (eager attention),
                     relative_position and bucket tables from `T5Attention._relative_position_bucket`
                     for two (num_buckets, max_distance) settings.

Run it in a throw-away environment that has the pinned CPU torch (torch is not an ivlib dependency):

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 transformers safetensors numpy
    /tmp/torchenv/bin/python scripts/make_t5_fixture.py

It was last run with torch 2.13.0+cpu, transformers 5.24.0, safetensors 0.8.0.
Everything is seeded, so a rerun with the same versions writes the same numbers.
"""

import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers import T5Config, T5EncoderModel
from transformers.models.t5.modeling_t5 import T5Attention, T5LayerNorm

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "t5_tiny")
SEED = 0
LENGTHS = (40, 23, 5)  # valid tokens per row; L = 40 > 16 reaches the logarithmic buckets
BUCKET_SETTINGS = ((32, 128), (8, 20))  # (num_buckets, max_distance) for the bucket tables


def main():
    torch.manual_seed(SEED)
    config = T5Config(
        vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
        is_encoder_decoder=False, use_cache=False,
    )
    config._attn_implementation = "eager"  # classic additive mask: padding gets finfo(float32).min
    model = T5EncoderModel(config).eval()
    assert config.dense_act_fn == "gelu_new" and config.is_gated_act

    # Layer-norm weights start at exactly 1, which would hide a loader that mixes them up:
    # give every norm its own random scale so each one is exercised by the comparison.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, T5LayerNorm):
                module.weight.uniform_(0.5, 1.5)

    batch, length = len(LENGTHS), max(LENGTHS)
    gen = torch.Generator().manual_seed(SEED + 1)
    input_ids = torch.randint(3, config.vocab_size, (batch, length), generator=gen)
    attention_mask = torch.zeros(batch, length, dtype=torch.long)
    for row, n in enumerate(LENGTHS):
        attention_mask[row, :n] = 1
        input_ids[row, n - 1] = 1  # EOS, as a tokenizer would put it
        input_ids[row, n:] = 0  # <pad>
    with torch.no_grad():
        hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    relative_position = torch.arange(-200, 201)
    buckets = {
        f"buckets_{nb}_{md}": T5Attention._relative_position_bucket(
            relative_position, bidirectional=True, num_buckets=nb, max_distance=md
        ).numpy().astype(np.int32)
        for nb, md in BUCKET_SETTINGS
    }

    os.makedirs(OUT, exist_ok=True)
    model.save_pretrained(OUT, safe_serialization=True)
    os.chmod(os.path.join(OUT, "model.safetensors"), 0o644)  # safetensors writes it owner-only
    np.savez_compressed(
        os.path.join(OUT, "reference.npz"),
        input_ids=input_ids.numpy().astype(np.int32),
        attention_mask=attention_mask.numpy().astype(np.int32),
        last_hidden_state=hidden.numpy().astype(np.float32),
        relative_position=relative_position.numpy().astype(np.int32),
        **buckets,
    )
    with open(os.path.join(OUT, "config.json")) as f:
        saved = json.load(f)
    print("wrote", sorted(os.listdir(OUT)), "to", os.path.normpath(OUT))
    print("torch", torch.__version__, "transformers", transformers.__version__, "python", sys.version.split()[0])
    print("saved config keys:", {k: saved[k] for k in ("d_model", "d_kv", "d_ff", "num_layers", "feed_forward_proj")})
    print("hidden state std", float(hidden.std()), "shape", tuple(hidden.shape))


if __name__ == "__main__":
    main()
