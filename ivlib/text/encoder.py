"""Text in, embeddings out: tokenizer + frozen T5 encoder, and the offline default (chapter 04).

`TextEncoder.encode(prompts)` gives (B, max_length, dim) float32 embeddings, padded positions zeroed,
and a (B, max_length) bool mask. The empty prompt "" is the unconditional (null) input of
classifier-free guidance (chapter 08): zeros, mask all False.
"""

import functools
import logging
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .prompts import check_known_words, check_prompts
from .t5 import T5Config, T5Encoder, load_t5_encoder, random_t5_encoder, resolve_checkpoint

ASSETS = Path(__file__).parent.parent / "assets" / "text"


class TextEncoder:
    """Tokenizer + frozen T5 encoder -> fixed-length text embeddings (chapter 04).

    encode(prompts) -> emb (B, max_length, dim) float32 with padded positions zeroed, and mask
    (B, max_length) bool. Prompts that are empty or only whitespace give the null embedding (zeros,
    mask all False) of classifier-free guidance. Longer prompts are truncated (EOS kept) with a warning.
    """

    def __init__(self, tokenizer, encoder: T5Encoder, max_length: int, name: str, batch_size: int = 64,
                 vocabulary=None):
        """vocabulary: the words the encoder was made to read (the toy encoders': the toy language's), for
        `check_words`; None for an encoder whose tokenizer spells any word (T5)."""
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2 (tokens + EOS), got {max_length!r}")
        if len(tokenizer) > encoder.config.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the encoder's vocab_size is "
                             f"{encoder.config.vocab_size}")
        self.tokenizer, self.encoder, self.max_length, self.name = tokenizer, encoder, max_length, name
        self.dim, self.batch_size = encoder.config.d_model, batch_size
        self.vocabulary = None if vocabulary is None else tuple(vocabulary)
        graphdef, self._state = nnx.split(encoder)

        def run(state, input_ids, mask):
            return jnp.where(mask[..., None], nnx.merge(graphdef, state)(input_ids, mask), 0.0)

        self._run = jax.jit(run)

    def tokenize(self, prompts):
        """prompts: list of B str -> (input_ids (B, max_length) int32, mask (B, max_length) bool), numpy."""
        prompts = check_prompts(prompts)
        lengths = [len(ids) for ids in self.tokenizer(prompts, verbose=False)["input_ids"]]
        too_long = [(p, n) for p, n in zip(prompts, lengths) if n > self.max_length]
        if too_long:
            warnings.warn(f"{len(too_long)} prompt(s) longer than max_length={self.max_length} tokens were truncated, "
                          f"e.g. {too_long[0][0][:80]!r} ({too_long[0][1]} tokens incl. EOS)", UserWarning,
                          stacklevel=2)
        out = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="np")
        null = np.array([not p.strip() for p in prompts])[:, None]
        input_ids = np.where(null, self.tokenizer.pad_token_id, out["input_ids"]).astype(np.int32)
        return input_ids, (out["attention_mask"].astype(bool) & ~null)

    def check_words(self, prompts, hint="pass allow_unknown_words=True to sample them anyway"):
        """ValueError naming the words of `prompts` outside the encoder's `vocabulary`, with the nearest known
        ones (`ivlib.text.prompts.check_known_words`); nothing to check without a vocabulary (chapter 04)."""
        prompts = check_prompts(prompts)
        if self.vocabulary is not None:
            normalizer = self.tokenizer.backend_tokenizer.normalizer
            check_known_words(prompts, self.vocabulary, normalizer.normalize_str if normalizer else str, hint)
        return prompts

    def encode(self, prompts):
        """prompts: list of B str -> (emb (B, max_length, dim) float32, mask (B, max_length) bool), jitted.

        Batches are padded up to a power of two (at most batch_size) so few shapes get compiled.
        """
        input_ids, mask = self.tokenize(prompts)
        chunks = []
        for start in range(0, len(input_ids), self.batch_size):
            ids, m = input_ids[start:start + self.batch_size], mask[start:start + self.batch_size]
            size = min(self.batch_size, 1 << (len(ids) - 1).bit_length())
            pad = ((0, size - len(ids)), (0, 0))
            chunks.append(self._run(self._state, np.pad(ids, pad), np.pad(m, pad))[:len(ids)])
        return jnp.concatenate(chunks) if len(chunks) > 1 else chunks[0], jnp.asarray(mask)


DEFAULT_CONFIG = T5Config(vocab_size=320, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)
DEFAULT_SEED = 0
# Our choice: T5 draws the position bias with std d_model**-0.5 = 0.125, which leaves random attention almost
# uniform, so word order barely registers. With 2.0 each head favours some offsets and a word takes in its
# neighbours: "circle" in "a red circle and a blue square" vs "a blue circle and a red square" moves by
# 5.9 (embedding norm 8) instead of 0.4 (mean over 3 seeds, measured when this was written).
DEFAULT_BIAS_STD = 2.0


class _NoTorchNotice(logging.Filter):
    """Drops one message of `transformers`: "PyTorch was not found. Models won't be available ...".
    ivlib uses only its tokenizers, which need no PyTorch, so the notice would only confuse."""

    def filter(self, record):
        return not record.getMessage().startswith("PyTorch was not found")


def _transformers():
    """`import transformers` without its PyTorch notice; every other message of transformers still shows."""
    logger = logging.getLogger("transformers")  # the logger transformers' __init__ warns on
    if not any(isinstance(f, _NoTorchNotice) for f in logger.filters):
        logger.addFilter(_NoTorchNotice())
    import transformers

    return transformers


def toy_tokenizer():
    """The shipped offline tokenizer (scripts/make_tokenizer.py): one token per toy-domain word, spelled-out
    fallback for other words, <pad> = 0, </s> = 1 appended, <unk> = 2 (chapter 04)."""
    return _transformers().PreTrainedTokenizerFast(
        tokenizer_file=str(ASSETS / "toy_tokenizer.json"), pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        model_max_length=1 << 20)


@functools.lru_cache(maxsize=None)
def _toy_normalizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(ASSETS / "toy_tokenizer.json")).normalizer


def check_toy_words(prompts, hint="pass allow_unknown_words=True to sample them anyway") -> list:
    """`TextEncoder.check_words` of the toy encoders, without building one (no `transformers`, no weights):
    ValueError naming each word of `prompts` outside the toy language, with the nearest known ones (chapter 04)."""
    from ivlib.data.captions import VOCABULARY

    return check_known_words(prompts, VOCABULARY, _toy_normalizer().normalize_str, hint)


PRETRAINED_NAME = "toy-t5"  # pretrained on the toy caption language (`ivlib.text.pretrain`)
RANDOM_NAME = "toy-t5-random"  # the same architecture with random frozen weights (the toy cascade's; the evaluator's)
TEXT_ENCODERS = (PRETRAINED_NAME, RANDOM_NAME)
PRETRAINED_FILE = ASSETS / "toy_t5.safetensors"
PRETRAIN_COMMAND = "ivlib pretrain-text --out ivlib/assets/text/toy_t5.safetensors"


# The toy cascade's encoder. Chapter 04's recipe ablation trained base models on both: with the pretrained one
# the model had not learnt colour after 500 steps (36 % right vs 100 % with the random one), because
# masked-token pretraining on a language whose attributes are drawn independently makes a word's output
# say which slot it fills, not which word it is (colour words' outputs: cosine 0.98 vs 0.38).
DEFAULT_NAME = RANDOM_NAME


def default_text_encoder(max_length: int = 32) -> TextEncoder:
    """The toy cascade's frozen text encoder (chapter 04): text_encoder(DEFAULT_NAME), the random toy T5."""
    return text_encoder(DEFAULT_NAME, max_length)


def text_encoder(name: str = DEFAULT_NAME, max_length: int = 32) -> TextEncoder:
    """The frozen text encoder called `name`, one per process, name and max_length (chapters 04, 10): one of
    the small offline toy encoders (`TEXT_ENCODERS`), or a T5 v1.1 checkpoint (`is_checkpoint_name`: a Hugging
    Face name such as "google/t5-v1_1-base", the `colab` config's, or a local folder), read by `t5_text_encoder`.

    Both are T5 v1.1 encoders of `DEFAULT_CONFIG` (d_model 64, 2 layers, 4 heads, about 0.1M parameters)
    over the toy tokenizer, with per-token RMS 1 (the final RMSNorm):

    * "toy-t5-random" (the default, `DEFAULT_NAME`): the weights drawn from a fixed seed with numpy (T5's
      initial scales; a stronger random position bias, our choice) and frozen, never trained. It carries
      token identity, order and context through random weights and has no knowledge of the language. The
      toy cascade's stages and the text tower of the toy evaluator (`ivlib.metrics`) read it.
    * "toy-t5": pretrained by masked-token prediction on captions of the toy language (`ivlib.text.pretrain`),
      shipped in `ivlib/assets/text/toy_t5.safetensors`, then frozen — the toy's counterpart of the paper's
      pretrained T5-XXL (§2.2). Chapter 04 shows why it is not the default (see `DEFAULT_NAME`).

    max_length: 32 tokens by default, our choice: toy captions have at most ~15 words (`t5_text_encoder`: 128).
    """
    check_text_encoder_name(name)
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise ValueError(f"max_length must be an int >= 2 (tokens + EOS), got {max_length!r}")
    if name not in TEXT_ENCODERS:
        return _checkpoint_encoder(name, max_length)
    return _text_encoder(name, max_length)


def is_checkpoint_name(name) -> bool:
    """Whether `name` names a T5 checkpoint rather than a toy encoder: a Hugging Face name ("owner/model")
    or an existing local folder."""
    return isinstance(name, str) and name not in TEXT_ENCODERS and ("/" in name or Path(name).is_dir())


def check_text_encoder_name(name):
    """ValueError unless `name` is a toy encoder's name or a checkpoint's (`is_checkpoint_name`); nothing is
    loaded, so a run can check it before it builds anything."""
    if not (name in TEXT_ENCODERS or is_checkpoint_name(name)):
        raise ValueError(f"unknown text encoder {name!r}; expected one of {TEXT_ENCODERS}, a Hugging Face T5 v1.1 "
                         "name such as 'google/t5-v1_1-base', or a local folder holding one")


@functools.lru_cache(maxsize=None)
def _checkpoint_encoder(name: str, max_length: int) -> TextEncoder:
    return t5_text_encoder(name, max_length)


@functools.lru_cache(maxsize=None)
def _random_t5() -> T5Encoder:
    return random_t5_encoder(DEFAULT_CONFIG, DEFAULT_SEED, DEFAULT_BIAS_STD)


@functools.lru_cache(maxsize=None)
def _pretrained_t5() -> T5Encoder:
    from ivlib.weights import load_params

    if not PRETRAINED_FILE.is_file():
        raise FileNotFoundError(f"the pretrained toy T5 is missing ({PRETRAINED_FILE}); make it with `{PRETRAIN_COMMAND}` "
                                f"or use text_encoder({RANDOM_NAME!r})")
    model = random_t5_encoder(DEFAULT_CONFIG, DEFAULT_SEED, DEFAULT_BIAS_STD)  # its own Variables: the random one stays
    nnx.update(model, load_params(PRETRAINED_FILE, nnx.state(model, nnx.Param)))
    return model


@functools.lru_cache(maxsize=None)
def _text_encoder(name: str, max_length: int) -> TextEncoder:
    from ivlib.data.captions import VOCABULARY

    # The name goes into saved EmbeddingCache files: change its version whenever the weights would change.
    if name == RANDOM_NAME:
        return TextEncoder(toy_tokenizer(), _random_t5(), max_length, name=f"ivlib-toy-t5-v1-seed{DEFAULT_SEED}",
                           vocabulary=VOCABULARY)
    return TextEncoder(toy_tokenizer(), _pretrained_t5(), max_length, name="ivlib-toy-t5-pretrained-v1",
                       vocabulary=VOCABULARY)


def t5_text_encoder(name: str = "google/t5-v1_1-xxl", max_length: int = 128, dtype=jnp.bfloat16,
                    local_files_only: bool = False, cache_dir=None) -> TextEncoder:
    """A pretrained T5 v1.1 encoder with its own tokenizer, from the hub or a local folder (chapter 04).

    The default, T5 v1.1 XXL, is our choice for the paper's "frozen T5-XXL" (§2.2 names no release). It needs
    the network or a cached copy, and ~10 GB of memory in bfloat16. max_length=128 tokens is our choice (the
    Imagen Video paper states no text length): room for long, detailed prompts. Encoding runs once per prompt
    (see `EmbeddingCache`), so the cost hardly matters.
    """
    AutoTokenizer = _transformers().AutoTokenizer
    directory = resolve_checkpoint(name, local_files_only, cache_dir)
    model = load_t5_encoder(str(directory), dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except Exception as err:
        raise FileNotFoundError(f"could not load a tokenizer from {directory} for {name!r} (a T5 spiece.model "
                                f"needs the sentencepiece package): {err}") from err
    return TextEncoder(tokenizer, model, max_length, name=name)
