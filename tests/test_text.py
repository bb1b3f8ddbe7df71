"""Tests of ivlib.text: the NNX T5 encoder against transformers' PyTorch reference, loading, the toy
tokenizer and default encoder, null prompts, truncation, the embedding cache, and bad input."""

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from ivlib import text

FIXTURE = Path(__file__).parent / "fixtures" / "t5_tiny"  # written by scripts/make_t5_fixture.py
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE / "reference.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def tiny():
    return text.load_t5_encoder(str(FIXTURE))


@pytest.fixture(scope="module")
def enc():
    """The random toy T5: the properties below are of its weights (the pretrained one: test_pretrained_text.py)."""
    return text.text_encoder(text.RANDOM_NAME)


def _copy_fixture(tmp_path, tensors=None, **config_changes):
    """A checkpoint folder like the fixture, with config.json keys changed and/or other tensors."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    config = json.loads((FIXTURE / "config.json").read_text())
    config.update(config_changes)
    (folder / "config.json").write_text(json.dumps(config))
    if tensors is None:
        shutil.copy(FIXTURE / "model.safetensors", folder / "model.safetensors")
    else:
        safetensors.numpy.save_file(tensors, str(folder / "model.safetensors"))
    return folder


# --- numerics against the reference -------------------------------------------------------------------
def test_t5_matches_transformers_reference(tiny, reference):
    out = tiny(reference["input_ids"], reference["attention_mask"])
    assert out.shape == (3, 40, 32) and out.dtype == jnp.float32
    # every position, padded queries included: the mask must act on keys exactly as in PyTorch
    np.testing.assert_allclose(np.asarray(out), reference["last_hidden_state"], atol=1e-5, rtol=1e-5)


def test_relative_position_buckets_match_reference(reference):
    for num_buckets, max_distance in ((32, 128), (8, 20)):
        buckets = text.relative_position_bucket(reference["relative_position"], num_buckets, max_distance)
        np.testing.assert_array_equal(buckets, reference[f"buckets_{num_buckets}_{max_distance}"])


def test_relative_position_bucket_closed_form():
    n = np.arange(8)  # below num_buckets / 4 = 8 every distance has its own bucket; keys after the query +16
    np.testing.assert_array_equal(text.relative_position_bucket(-n), n)
    np.testing.assert_array_equal(text.relative_position_bucket(n[1:]), 16 + n[1:])
    far = text.relative_position_bucket(np.array([-10**6, -128, 128, 10**6]))
    np.testing.assert_array_equal(far, [15, 15, 31, 31])  # at and beyond max_distance: the last bucket


def test_bfloat16_loading_stays_close(reference):
    model = text.load_t5_encoder(str(FIXTURE), dtype=jnp.bfloat16)
    assert model.shared.embedding[...].dtype == jnp.bfloat16
    out = np.asarray(model(reference["input_ids"], reference["attention_mask"]))
    assert out.dtype == np.float32
    err = np.abs(out - reference["last_hidden_state"])
    assert err.max() < 0.15 and err.mean() < 0.02  # bfloat16 keeps ~3 significant digits; outputs have std ~1


def test_sharded_checkpoint_with_renamed_embedding(tmp_path, reference):
    tensors = safetensors.numpy.load_file(str(FIXTURE / "model.safetensors"))
    tensors["encoder.embed_tokens.weight"] = tensors.pop("shared.weight")  # the tied embedding's other name
    names = sorted(tensors)
    shards = {"model-00001-of-00003.safetensors": names[: len(names) // 2],
              "model-00002-of-00003.safetensors": names[len(names) // 2:]}
    folder = _copy_fixture(tmp_path, tensors={"x": np.zeros(1, np.float32)})
    (folder / "model.safetensors").unlink()
    for file, keys in shards.items():
        safetensors.numpy.save_file({k: tensors[k] for k in keys}, str(folder / file))
    weight_map = {k: f for f, keys in shards.items() for k in keys}
    weight_map["decoder.final_layer_norm.weight"] = "model-00003-of-00003.safetensors"  # never read: not shipped
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    out = text.load_t5_encoder(str(folder))(reference["input_ids"], reference["attention_mask"])
    np.testing.assert_allclose(np.asarray(out), reference["last_hidden_state"], atol=1e-5, rtol=1e-5)


def test_hub_name_is_read_from_the_local_cache(tmp_path, reference):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--ivlib--t5-tiny"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for file in ("config.json", "model.safetensors"):
        shutil.copy(FIXTURE / file, repo / "snapshots" / commit / file)
    model = text.load_t5_encoder("ivlib/t5-tiny", local_files_only=True, cache_dir=str(tmp_path / "hub"))
    out = model(reference["input_ids"], reference["attention_mask"])
    np.testing.assert_allclose(np.asarray(out), reference["last_hidden_state"], atol=1e-5, rtol=1e-5)


# --- loading errors -----------------------------------------------------------------------------------
def test_hub_name_not_cached_offline_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"google/t5-v1_1-xxl.*(network|cached)"):
        text.load_t5_encoder("google/t5-v1_1-xxl", local_files_only=True, cache_dir=str(tmp_path))


def test_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        text.load_t5_encoder(str(tmp_path / "no" / "such" / "t5"))


def test_directory_without_weights_or_config_raises(tmp_path):
    folder = _copy_fixture(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="safetensors"):
        text.load_t5_encoder(str(folder))
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        text.load_t5_encoder(str(folder))


def test_config_weight_shape_mismatch_raises(tmp_path):
    folder = _copy_fixture(tmp_path, d_ff=48)
    with pytest.raises(ValueError, match=r"DenseReluDense\.wi_0\.weight.*\(64, 32\).*\(48, 32\)"):
        text.load_t5_encoder(str(folder))


def test_missing_weight_raises(tmp_path):
    tensors = safetensors.numpy.load_file(str(FIXTURE / "model.safetensors"))
    del tensors["encoder.final_layer_norm.weight"]
    with pytest.raises(ValueError, match="final_layer_norm"):
        text.load_t5_encoder(str(_copy_fixture(tmp_path, tensors=tensors)))


def test_config_validation():
    with pytest.raises(ValueError, match="gated-gelu"):
        text.T5Config.from_hf_dict({"feed_forward_proj": "relu", "vocab_size": 8, "d_model": 4, "d_kv": 2,
                                    "d_ff": 8, "num_layers": 1, "num_heads": 2})
    with pytest.raises(ValueError, match="d_model"):
        text.T5Config(vocab_size=8, d_model=0, d_kv=2, d_ff=8, num_layers=1, num_heads=2)
    with pytest.raises(ValueError, match="num_buckets"):
        text.T5Config(8, 4, 2, 8, 1, 2, relative_attention_num_buckets=6)


def test_encoder_rejects_bad_shapes(tiny):
    with pytest.raises(ValueError, match="input_ids"):
        tiny(np.zeros(5, np.int32), np.ones(5, bool))
    with pytest.raises(ValueError, match="attention_mask"):
        tiny(np.zeros((2, 5), np.int32), np.ones((2, 4), bool))


# --- the toy tokenizer --------------------------------------------------------------------------------
def test_toy_tokenizer_ids_and_words():
    tok = text.toy_tokenizer()
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    words = ("zero one two three four five six seven eight nine 0 1 2 3 4 5 6 7 8 9 red green blue yellow "
             "magenta cyan white orange purple circle square triangle moving left right up down bouncing "
             "diagonally still outlined striped solid a the and digit").split()
    ids = tok(" ".join(words))["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == words + ["</s>"]  # one token per domain word, EOS appended
    other = tok("Zebras jump over 42 lazy dogs, don't they?")["input_ids"]  # spelled out, never <unk>
    assert tok.unk_token_id not in other and other[-1] == 1 and len(other) > 10


def test_every_caption_word_of_the_toy_data_is_one_token():
    captions = pytest.importorskip("ivlib.data.captions")
    tok = text.toy_tokenizer()
    split = {w: tok(w, add_special_tokens=False)["input_ids"] for w in captions.VOCABULARY}
    assert {w: ids for w, ids in split.items() if len(ids) != 1 or ids[0] == tok.unk_token_id} == {}


def test_shipped_tokenizer_is_what_the_script_builds():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tokenizer.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the random toy encoder -----------------------------------------------------------------------------
PROMPTS = ["a red circle moving left", "a red circle moving right", "the digit 7 bouncing", "a blue striped square"]


def test_default_encoder_shapes_scale_and_padding(enc):
    assert text.text_encoder(text.RANDOM_NAME, max_length=32) is enc and enc.dim == 64 and enc.max_length == 32
    emb, mask = enc.encode(PROMPTS)
    emb, mask = np.asarray(emb), np.asarray(mask)
    assert emb.shape == (4, 32, 64) and emb.dtype == np.float32 and mask.dtype == bool
    np.testing.assert_array_equal(mask.sum(1), [6, 6, 5, 5])  # words + EOS
    np.testing.assert_array_equal(emb[~mask], 0.0)  # padded positions zeroed
    rms = np.sqrt(np.mean(emb[mask] ** 2, axis=-1))
    np.testing.assert_allclose(rms, 1.0, atol=1e-3)  # final RMSNorm with unit weights: per-token scale 1
    assert np.all(np.abs(emb[mask].mean(-1)) < 0.5)


def test_default_encoder_tells_prompts_apart_and_binds_words(enc):
    emb, _ = enc.encode(PROMPTS[:2] + ["a red circle and a blue square", "a blue circle and a red square"])
    emb = np.asarray(emb)
    assert np.linalg.norm(emb[0, 4] - emb[1, 4]) > 8.0  # "left" vs "right": near-orthogonal (norm 8 each)
    assert np.linalg.norm(emb[0, :4] - emb[1, :4], axis=-1).min() > 0.5  # the context reaches the other words
    # same words, swapped colours: without word order "circle" would be identical in both
    assert np.linalg.norm(emb[2, 2] - emb[3, 2]) > 2.0


def test_default_encoder_weights_come_from_numpy_seed(enc):
    table = np.asarray(enc.encoder.shared.embedding[...])  # the first tensor drawn, std 1
    expected = np.random.default_rng(text.DEFAULT_SEED).standard_normal((320, 64)).astype(np.float32)
    np.testing.assert_array_equal(table, expected)


def test_default_encoder_is_batch_independent_and_padding_invariant(enc):
    batch, _ = enc.encode(PROMPTS)
    alone, _ = enc.encode([PROMPTS[2]])
    np.testing.assert_allclose(np.asarray(batch[2]), np.asarray(alone[0]), atol=1e-5)
    short, short_mask = text.text_encoder(text.RANDOM_NAME, 16).encode(PROMPTS)
    np.testing.assert_allclose(np.asarray(short), np.asarray(batch)[:, :16], atol=1e-5)  # padding changes nothing
    assert np.asarray(short_mask).shape == (4, 16)


def test_empty_prompt_is_null_embedding(enc):
    emb, mask = enc.encode(["", PROMPTS[0], "   "])
    emb, mask = np.asarray(emb), np.asarray(mask)
    np.testing.assert_array_equal(emb[[0, 2]], 0.0)
    assert not mask[[0, 2]].any()
    alone, _ = enc.encode([PROMPTS[0]])
    np.testing.assert_allclose(emb[1], np.asarray(alone[0]), atol=1e-5)


def test_overlong_prompt_is_truncated_with_warning(enc):
    long_prompt = " ".join(["red circle"] * 30)  # 61 tokens with EOS
    with pytest.warns(UserWarning, match="truncated"):
        emb, mask = enc.encode([long_prompt, "a red circle"])
    assert np.asarray(mask)[0].all() and np.asarray(mask)[1].sum() == 4
    with pytest.warns(UserWarning, match="61 tokens"):
        ids, _ = enc.tokenize([long_prompt])
    assert ids[0, -1] == 1 and ids[0, -2] == ids[0, -4]  # EOS kept at the end of the truncated prompt
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.encode([" ".join(["red"] * 31)])  # exactly 32 tokens: fits, no warning


def test_bad_prompts_raise(enc):
    with pytest.raises(ValueError, match="list of strings"):
        enc.encode("a red circle")
    with pytest.raises(ValueError, match="empty"):
        enc.encode([])
    with pytest.raises(ValueError, match=r"prompts\[1\] must be a str"):
        enc.encode(["a red circle", 3])
    with pytest.raises(ValueError, match="list of strings"):
        text.EmbeddingCache(enc).get(None)
    ids, _ = enc.tokenize(np.array(PROMPTS[:2]))  # a 1-D numpy array of str is fine
    assert ids.shape == (2, 32)


# --- the cache ----------------------------------------------------------------------------------------
def _count_encodes(enc, monkeypatch):
    calls, encode = [], enc.encode
    monkeypatch.setattr(enc, "encode", lambda prompts: calls.append(list(prompts)) or encode(prompts))
    return calls


def test_cache_encodes_each_prompt_once(enc, monkeypatch):
    direct_emb, direct_mask = enc.encode(PROMPTS[:3])
    calls = _count_encodes(enc, monkeypatch)
    cache = text.EmbeddingCache(enc)
    emb1, mask1 = cache.get([PROMPTS[0], PROMPTS[1], PROMPTS[0]])
    assert calls == [[PROMPTS[0], PROMPTS[1]]]  # misses only, deduplicated, one batched call
    emb2, mask2 = cache.get([PROMPTS[1], PROMPTS[0]])
    assert len(calls) == 1 and len(cache) == 2
    np.testing.assert_array_equal(np.asarray(emb2), np.asarray(emb1)[[1, 0]])
    np.testing.assert_array_equal(np.asarray(mask2), np.asarray(mask1)[[1, 0]])
    emb3, _ = cache.get([PROMPTS[2], PROMPTS[0], PROMPTS[2]])
    assert calls[1:] == [[PROMPTS[2]]]
    np.testing.assert_allclose(np.asarray(emb3)[[0, 1]], np.asarray(direct_emb)[[2, 0]], atol=1e-5)


def test_cache_save_and_load(enc, monkeypatch, tmp_path):
    cache = text.EmbeddingCache(enc)
    emb, mask = cache.get(PROMPTS + [""])
    cache.save(tmp_path / "cache.npz")
    calls = _count_encodes(enc, monkeypatch)
    loaded = text.EmbeddingCache(enc).load(tmp_path / "cache.npz")
    emb2, mask2 = loaded.get(list(reversed(PROMPTS + [""])))
    assert calls == [] and len(loaded) == 5
    np.testing.assert_array_equal(np.asarray(emb2), np.asarray(emb)[::-1])
    np.testing.assert_array_equal(np.asarray(mask2), np.asarray(mask)[::-1])
    with pytest.raises(ValueError, match="max_length"):
        text.EmbeddingCache(text.default_text_encoder(16)).load(tmp_path / "cache.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not an EmbeddingCache"):
        cache.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        cache.load(tmp_path / "missing.npz")


def test_tokenizer_hides_only_the_pytorch_notice_of_transformers():
    """ivlib needs only transformers' tokenizers: its "PyTorch was not found" notice is dropped at import,
    any other message of the `transformers` logger still reaches stderr (a fresh process: the notice is
    logged once, when transformers is first imported)."""
    code = ("import logging\nfrom ivlib import text\ntext.toy_tokenizer()\n"
            "logging.getLogger('transformers').warning('another message')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "PyTorch was not found" not in result.stderr
    assert "another message" in result.stderr
