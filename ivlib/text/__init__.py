"""The frozen T5 text encoder: tokenize, encode, cache (chapter 04, text conditioning).

Imagen Video conditions every model of its cascade on the contextual embeddings of a frozen
T5-XXL encoder (paper §2.2, Fig. 6). This package holds, one idea per module:

* `t5`: `T5Config`, `T5Encoder` (a Flax NNX port of the T5 v1.1 encoder) and `load_t5_encoder`,
  which reads Hugging Face safetensors checkpoints by parameter name (`google/t5-v1_1-xxl`,
  our choice for the paper's T5-XXL: the paper names no release).
* `encoder`: `TextEncoder` (tokenizer + frozen encoder -> fixed-length embeddings and mask),
  `text_encoder` (the small offline toy encoders: "toy-t5-random", random frozen weights, the toy
  cascade's, `default_text_encoder`; "toy-t5", pretrained on toy captions, chapter 04's ablation; or, by
  a checkpoint's name or folder, a pretrained T5 such as the `colab` config's) and `t5_text_encoder` (T5-XXL).
* `pretrain`: masked-token pretraining of the toy T5 on the toy caption language (`ivlib pretrain-text`).
* `cache`: `EmbeddingCache`, so that text is encoded once and no training step re-encodes it.
* `prompts`: checks of prompts; the toy encoders know only the toy captions' words, and `check_toy_words`
  (`TextEncoder.check_words`) names any other word with the nearest known ones.

The empty prompt "" is the unconditional (null) input of classifier-free guidance (chapter 08):
its embedding is all zeros and its mask all False.
"""

from .cache import EmbeddingCache
from .encoder import (DEFAULT_BIAS_STD, DEFAULT_CONFIG, DEFAULT_NAME, DEFAULT_SEED, PRETRAINED_NAME, RANDOM_NAME, TEXT_ENCODERS,
                      TextEncoder, check_text_encoder_name, check_toy_words, default_text_encoder, is_checkpoint_name,
                      t5_text_encoder, text_encoder, toy_tokenizer)
from .t5 import T5Config, T5Encoder, load_t5_encoder, random_t5_encoder, relative_position_bucket, resolve_checkpoint

__all__ = ["DEFAULT_BIAS_STD", "DEFAULT_CONFIG", "DEFAULT_NAME", "DEFAULT_SEED", "EmbeddingCache", "PRETRAINED_NAME", "RANDOM_NAME",
           "TEXT_ENCODERS", "text_encoder", "T5Config", "T5Encoder",
           "TextEncoder", "check_text_encoder_name", "check_toy_words", "default_text_encoder", "is_checkpoint_name",
           "load_t5_encoder", "random_t5_encoder", "relative_position_bucket",
           "resolve_checkpoint", "t5_text_encoder", "toy_tokenizer"]
