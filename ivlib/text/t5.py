"""The T5 v1.1 encoder in Flax NNX, and Hugging Face checkpoints read into it (chapter 04).

Imagen Video's text encoder is a frozen T5-XXL (paper §2.1; Raffel et al., 2020). `transformers` >= 5
has no JAX T5, so this is a compact port of the v1.1 encoder: RMSNorm without mean subtraction,
gated-GELU feed-forward, a bucketed relative position bias learned in the first layer and shared
by the others, and no 1/sqrt(d) scaling of attention logits. `load_t5_encoder` maps Hugging Face
parameter names onto it; `tests/fixtures/t5_tiny` pins its numerics to transformers' PyTorch model.
"""

import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ivlib.compat import ModuleList, get_value, set_value

PRECISION = jax.lax.Precision.HIGHEST  # text is encoded once per prompt: full float32 matmuls on every backend


# --- configuration ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class T5Config:
    """Sizes of a T5 v1.1 encoder (chapter 04). Field names follow Hugging Face's `T5Config`.

    T5-XXL v1.1, the paper's encoder: vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240,
    num_layers=24, num_heads=64 (4.76B encoder parameters).
    """

    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_heads: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6

    def __post_init__(self):
        for f in fields(self)[:-1]:
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"T5Config.{f.name} must be a positive int, got {value!r}")
        if self.relative_attention_num_buckets % 4:
            raise ValueError("T5Config.relative_attention_num_buckets must be a multiple of 4 (two directions, "
                             f"each half exact and half logarithmic), got {self.relative_attention_num_buckets}")
        if self.relative_attention_max_distance <= self.relative_attention_num_buckets // 4:
            raise ValueError("T5Config.relative_attention_max_distance must exceed relative_attention_num_buckets / 4, "
                             f"got {self.relative_attention_max_distance}")
        if not self.layer_norm_epsilon > 0:
            raise ValueError(f"T5Config.layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon!r}")

    @classmethod
    def from_hf_dict(cls, config: dict) -> "T5Config":
        """Read a Hugging Face T5 `config.json` dict; only T5 v1.1 (feed_forward_proj="gated-gelu") is accepted."""
        proj = config.get("feed_forward_proj", "relu")
        if proj != "gated-gelu":
            raise ValueError(f"config feed_forward_proj={proj!r}: ivlib's encoder is T5 v1.1, which needs 'gated-gelu' "
                             "(original T5 uses 'relu'; umT5/mT5 variants are not supported)")
        missing = [f.name for f in fields(cls)[:6] if f.name not in config]
        if missing:
            raise ValueError(f"T5 config lacks the keys {missing}")
        return cls(**{f.name: config[f.name] for f in fields(cls) if f.name in config})


def relative_position_bucket(relative_position, num_buckets=32, max_distance=128):
    """T5's bidirectional bucket of each relative position k - q (chapter 04; Raffel et al., 2020, §2.1).

    Half of the buckets hold keys after the query, half before; in each half, distances below
    num_buckets/4 get a bucket each and larger ones share logarithmically wider buckets, all
    distances >= max_distance the last. Numpy in float32, like the reference, so that the integer
    cut-offs agree exactly. relative_position: int array of any shape -> int32 array, same shape.
    """
    relative_position = np.asarray(relative_position, np.int64)
    half = num_buckets // 2
    max_exact = half // 2
    n = np.abs(relative_position)
    log_ratio = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(max_exact))
    scale = np.float32(half - max_exact) / np.float32(math.log(max_distance / max_exact))
    large = np.minimum(max_exact + (log_ratio * scale).astype(np.int64), half - 1)
    bucket = np.where(relative_position > 0, half, 0) + np.where(n < max_exact, n, large)
    return bucket.astype(np.int32)


# --- the network ------------------------------------------------------------------------------------
def _init_std(kind: str, config: T5Config) -> float:
    """T5's initial standard deviations (Mesh TensorFlow / Hugging Face `_init_weights`, factor 1)."""
    fan_in = {"shared": 1, "q": config.d_model * config.d_kv, "o": config.num_heads * config.d_kv, "wo": config.d_ff}
    return fan_in.get(kind, config.d_model) ** -0.5  # k, v, wi_0, wi_1, relative_attention_bias: d_model


def _linear(kind: str, d_in: int, d_out: int, config: T5Config, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """A bias-free projection, kernel (d_in, d_out) = the transpose of Hugging Face's (out, in) weight."""
    return nnx.Linear(d_in, d_out, use_bias=False, dtype=dtype, param_dtype=dtype, precision=PRECISION,
                      kernel_init=jax.nn.initializers.normal(_init_std(kind, config)), rngs=rngs)


class T5RMSNorm(nnx.Module):
    """T5's layer norm: x / rms(x) * weight, no mean subtraction, no bias; rms in float32 (chapter 04)."""

    def __init__(self, dim: int, eps: float, dtype=jnp.float32):
        self.weight = nnx.Param(jnp.ones((dim,), dtype))
        self.eps = eps

    def __call__(self, x):
        variance = jnp.mean(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
        x = x.astype(jnp.float32) * jax.lax.rsqrt(variance + self.eps)
        weight = self.weight[...]
        return weight * x.astype(weight.dtype)


class T5SelfAttention(nnx.Module):
    """Multi-head self-attention with an additive bias and no 1/sqrt(d_kv) scaling (chapter 04).

    The first layer owns the relative position bias table (buckets, heads); later layers reuse its bias.
    """

    def __init__(self, config: T5Config, has_relative_bias: bool, *, dtype=jnp.float32, rngs: nnx.Rngs):
        inner = config.num_heads * config.d_kv
        self.q = _linear("q", config.d_model, inner, config, dtype, rngs)
        self.k = _linear("k", config.d_model, inner, config, dtype, rngs)
        self.v = _linear("v", config.d_model, inner, config, dtype, rngs)
        self.o = _linear("o", inner, config.d_model, config, dtype, rngs)
        init = jax.nn.initializers.normal(_init_std("relative_attention_bias", config))
        table = lambda: nnx.Embed(config.relative_attention_num_buckets, config.num_heads, dtype=dtype,
                                  param_dtype=dtype, embedding_init=init, rngs=rngs)
        self.relative_attention_bias = table() if has_relative_bias else None  # assign once (flax 0.12 fixes its kind)
        self.num_heads, self.d_kv = config.num_heads, config.d_kv

    def __call__(self, x, bias):
        """x: (B, L, d_model); bias: (B, heads, L, L) float32, position bias + padding mask -> (B, L, d_model)."""
        split = lambda y: y.reshape(*y.shape[:2], self.num_heads, self.d_kv)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=PRECISION).astype(jnp.float32) + bias
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v, precision=PRECISION)
        return self.o(out.reshape(*x.shape[:2], -1))


class T5Block(nnx.Module):
    """Pre-norm residual block: x + attention(norm(x)), then x + wo(gelu(wi_0 x) * wi_1 x) (chapter 04)."""

    def __init__(self, config: T5Config, has_relative_bias: bool, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.attention_norm = T5RMSNorm(config.d_model, config.layer_norm_epsilon, dtype)
        self.attention = T5SelfAttention(config, has_relative_bias, dtype=dtype, rngs=rngs)
        self.mlp_norm = T5RMSNorm(config.d_model, config.layer_norm_epsilon, dtype)
        self.wi_0 = _linear("wi_0", config.d_model, config.d_ff, config, dtype, rngs)  # gate
        self.wi_1 = _linear("wi_1", config.d_model, config.d_ff, config, dtype, rngs)
        self.wo = _linear("wo", config.d_ff, config.d_model, config, dtype, rngs)

    def __call__(self, x, bias):
        x = x + self.attention(self.attention_norm(x), bias)
        h = self.mlp_norm(x)
        h = jax.nn.gelu(self.wi_0(h), approximate=True) * self.wi_1(h)  # gated GELU; tanh form = HF's gelu_new
        return x + self.wo(h)


class T5Encoder(nnx.Module):
    """The T5 v1.1 encoder stack: token embedding, `num_layers` blocks, final RMSNorm (chapter 04).

    Parameters are `dtype` (float32, or bfloat16 for T5-XXL); the output is float32. The embedding is
    not scaled and no dropout is applied: the encoder is frozen, only ever run for inference.
    """

    def __init__(self, config: T5Config, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        self.shared = nnx.Embed(config.vocab_size, config.d_model, dtype=dtype, param_dtype=dtype,
                                embedding_init=jax.nn.initializers.normal(_init_std("shared", config)), rngs=rngs)
        self.blocks = ModuleList([T5Block(config, i == 0, dtype=dtype, rngs=rngs) for i in range(config.num_layers)])
        self.final_norm = T5RMSNorm(config.d_model, config.layer_norm_epsilon, dtype)

    def __call__(self, input_ids, attention_mask):
        """input_ids: (B, L) int token ids; attention_mask: (B, L) bool/int, True at tokens -> (B, L, d_model) float32.

        Padded keys get the most negative float32 added to their logits, as in the reference; padded
        query positions still hold (meaningless) values: `TextEncoder` zeroes them.
        """
        if jnp.ndim(input_ids) != 2 or jnp.shape(attention_mask) != jnp.shape(input_ids):
            raise ValueError(f"input_ids must be (batch, length) and attention_mask the same shape, got "
                             f"{jnp.shape(input_ids)} and {jnp.shape(attention_mask)}")
        length = jnp.shape(input_ids)[1]
        buckets = relative_position_bucket(np.arange(length)[None, :] - np.arange(length)[:, None],
                                           self.config.relative_attention_num_buckets,
                                           self.config.relative_attention_max_distance)
        table = self.blocks[0].attention.relative_attention_bias.embedding[...]  # (buckets, heads)
        position_bias = jnp.transpose(table[buckets].astype(jnp.float32), (2, 0, 1))  # (heads, L, L)
        mask = jnp.asarray(attention_mask).astype(bool)
        bias = position_bias[None] + jnp.where(mask, 0.0, jnp.finfo(jnp.float32).min)[:, None, None, :]
        x = self.shared(jnp.asarray(input_ids).astype(jnp.int32))
        for block in self.blocks:
            x = block(x, bias)
        return self.final_norm(x).astype(jnp.float32)


# --- Hugging Face checkpoints -------------------------------------------------------------------------
def _hf_parameter_table(model: T5Encoder) -> dict:
    """Hugging Face `T5EncoderModel` parameter name -> (our nnx.Param, transpose?). torch Linear is (out, in)."""
    table = {"shared.weight": (model.shared.embedding, False),
             "encoder.final_layer_norm.weight": (model.final_norm.weight, False)}
    for i, block in enumerate(model.blocks):
        prefix = f"encoder.block.{i}.layer."
        table[prefix + "0.layer_norm.weight"] = (block.attention_norm.weight, False)
        for name in "qkvo":
            table[prefix + f"0.SelfAttention.{name}.weight"] = (getattr(block.attention, name).kernel, True)
        if block.attention.relative_attention_bias is not None:
            table[prefix + "0.SelfAttention.relative_attention_bias.weight"] = (
                block.attention.relative_attention_bias.embedding, False)
        table[prefix + "1.layer_norm.weight"] = (block.mlp_norm.weight, False)
        for name in ("wi_0", "wi_1", "wo"):
            table[prefix + f"1.DenseReluDense.{name}.weight"] = (getattr(block, name).kernel, True)
    return table


_ALIASES = {"encoder.embed_tokens.weight": "shared.weight"}  # the tied embedding is saved under either name


def _fill(model: T5Encoder, tensors, source: str) -> T5Encoder:
    """Assign (name, numpy array) pairs in Hugging Face naming to `model`'s parameters, checking shapes."""
    table, done = _hf_parameter_table(model), set()
    for name, array in tensors:
        name = _ALIASES.get(name, name)
        if name not in table or name in done:
            continue
        param, transpose = table[name]
        target = get_value(param)  # a jax.ShapeDtypeStruct when `model` comes from nnx.eval_shape
        expected = tuple(target.shape[::-1] if transpose else target.shape)
        if tuple(array.shape) != expected:
            raise ValueError(f"weight {name!r} in {source} has shape {tuple(array.shape)}, "
                             f"but config.json implies {expected}")
        set_value(param, jnp.asarray(array.T if transpose else array, dtype=target.dtype))
        done.add(name)
    missing = sorted(set(table) - done)
    if missing:
        raise ValueError(f"{source} lacks {len(missing)} encoder weights, e.g. {missing[:3]}")
    return model


def _read_safetensors(directory: Path):
    """Yield (name, numpy array) for the encoder's tensors in a directory's *.safetensors (sharded or not)."""
    from safetensors import safe_open

    wanted = lambda key: key.startswith("encoder.") or key == "shared.weight"
    indexes = sorted(directory.glob("*.safetensors.index.json"))
    if indexes:
        weight_map = json.loads(indexes[0].read_text())["weight_map"]
        files = sorted({directory / f for key, f in weight_map.items() if wanted(key)})
    else:
        files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {directory} (ivlib reads safetensors only; convert "
                                "a pytorch_model.bin with transformers' save_pretrained(safe_serialization=True))")
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"shard {file.name} named by the index is missing from {directory}")
        with safe_open(str(file), framework="np") as f:
            for key in f.keys():
                if wanted(key):
                    yield key, f.get_tensor(key)


def resolve_checkpoint(name_or_path: str, local_files_only: bool = False, cache_dir=None) -> Path:
    """The folder of a T5 checkpoint: a local directory as it is, or a hub name fetched (config, tokenizer and
    encoder shards only) or found in the cache by `huggingface_hub.snapshot_download` (chapter 04)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name_or_path):
        raise FileNotFoundError(f"name_or_path={name_or_path!r}: no such directory (expected a folder with config.json "
                                "and *.safetensors, or a Hugging Face hub name such as 'google/t5-v1_1-xxl')")
    from huggingface_hub import snapshot_download

    common = ["config.json", "*.safetensors.index.json", "spiece.model", "tokenizer*.json", "special_tokens_map.json"]
    try:
        folder = Path(snapshot_download(name_or_path, allow_patterns=common, cache_dir=cache_dir,
                                        local_files_only=local_files_only))
        indexes = sorted(folder.glob("*.safetensors.index.json"))  # fetch only the shards holding encoder weights
        shards = sorted({f for k, f in json.loads(indexes[0].read_text())["weight_map"].items()
                         if k.startswith("encoder.") or k == "shared.weight"}) if indexes else ["*.safetensors"]
        return Path(snapshot_download(name_or_path, allow_patterns=common + shards, cache_dir=cache_dir,
                                      local_files_only=local_files_only))
    except Exception as err:  # offline, not cached, unknown repo, HTTP errors: one clear message
        reason = (str(err).splitlines() or [""])[0][:200]
        raise FileNotFoundError(
            f"T5 checkpoint {name_or_path!r} is neither a local directory nor available from the Hugging Face hub "
            f"or its cache ({type(err).__name__}: {reason}). Without network access it must already be cached; "
            "otherwise pass a local folder with config.json and *.safetensors, or use default_text_encoder().") from err


def load_t5_encoder(name_or_path: str, dtype=jnp.float32, *, local_files_only: bool = False,
                    cache_dir=None) -> T5Encoder:
    """Read a Hugging Face T5 v1.1 checkpoint (config.json + safetensors) into a `T5Encoder` (chapter 04).

    name_or_path: a local directory, or a hub name such as "google/t5-v1_1-xxl" (our choice for the paper's
    T5-XXL), fetched with `huggingface_hub.snapshot_download` (encoder shards only) or found in its cache.
    dtype: parameter dtype; jnp.bfloat16 halves T5-XXL's 19 GB of float32 encoder weights.
    Raises FileNotFoundError for a missing folder/config/weights, ValueError when weights and config disagree.
    """
    directory = resolve_checkpoint(name_or_path, local_files_only, cache_dir)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in {directory}")
    config = T5Config.from_hf_dict(json.loads(config_file.read_text()))
    model = nnx.eval_shape(lambda: T5Encoder(config, dtype=dtype, rngs=nnx.Rngs(0)))  # shapes only, no memory
    return _fill(model, _read_safetensors(directory), str(directory))


def random_t5_encoder(config: T5Config, seed: int, bias_std: float | None = None, dtype=jnp.float32) -> T5Encoder:
    """A T5Encoder with T5's initial weight scales drawn from `seed` by numpy (chapter 04).

    Unlike jax.random (whose streams have changed between jax versions), numpy's PCG64 stream gives the
    same weights on every platform and version, so embeddings that trained weights depend on stay put.
    The tensors are drawn one after another in Hugging Face naming order (`shared.weight` first).
    bias_std: std of the relative position bias table (None: T5's d_model**-0.5).
    """
    model = nnx.eval_shape(lambda: T5Encoder(config, dtype=dtype, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)

    def draw():
        for name, (param, transpose) in _hf_parameter_table(model).items():
            shape = get_value(param).shape[::-1] if transpose else get_value(param).shape
            kind = name.split(".")[-2]
            if "layer_norm" in kind:
                yield name, np.ones(shape, np.float32)
            else:
                std = bias_std if kind == "relative_attention_bias" and bias_std else _init_std(kind, config)
                yield name, (std * rng.standard_normal(shape)).astype(np.float32)

    return _fill(model, draw(), f"random weights (seed {seed})")
