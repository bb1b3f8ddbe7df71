"""Each config's own text encoder (chapter 10): `ivlib train` builds what the config names, a toy encoder or a
T5 checkpoint folder, records it, precomputes the captions' embeddings on disk, and sampling reads it back."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ivlib.configs import CONFIG_NAMES, colab, text_settings, toy
from ivlib.data.captions import VOCABULARY
from ivlib.nn.unet import Level, UNetConfig
from ivlib.stage import Stage
from ivlib.text import EmbeddingCache, check_text_encoder_name, is_checkpoint_name, text_encoder
from ivlib.trainer import TEXT_CACHE, BatchSource, TrainConfig, train

FIXTURE = Path(__file__).parent / "fixtures" / "t5_tiny"  # a Hugging Face T5 v1.1 encoder, d_model 32


def t5_checkpoint(folder: Path) -> Path:
    """A complete T5 checkpoint folder as `save_pretrained` writes one: the tiny fixture's config and weights
    with a word-level tokenizer of the toy caption language (ids below the fixture's vocab_size of 128)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(FIXTURE / name, folder / name)
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(sorted(VOCABULARY))}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                      pre_tokenizers.Digits(individual_digits=True)])
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "</s>",
        "unk_token": "<unk>", "model_max_length": 512}))
    return folder


def test_every_config_names_its_encoder_and_a_run_takes_it():
    assert [text_settings(name) for name in ("toy", "colab")] == [(toy.TEXT_ENCODER, toy.TEXT_LENGTH),
                                                               (colab.TEXT_ENCODER, colab.TEXT_LENGTH)]
    for name in CONFIG_NAMES:
        encoder, length = text_settings(name)
        check_text_encoder_name(encoder)  # a name a run accepts, checked without loading anything
        assert TrainConfig(workdir="w", config=name).resolved().text_encoder == encoder
    colab_run = TrainConfig(workdir="w", config="colab").resolved()
    assert (colab_run.text_encoder, colab_run.max_text_length) == ("google/t5-v1_1-base", 64)
    mine = TrainConfig(workdir="w", config="colab", text_encoder="toy-t5", max_text_length=16).resolved()
    assert (mine.text_encoder, mine.max_text_length) == ("toy-t5", 16)  # given settings win
    with pytest.raises(ValueError, match="unknown config name"):
        text_settings("tiny")


def test_a_name_that_is_neither_a_toy_encoder_nor_a_checkpoint_is_refused():
    assert is_checkpoint_name("google/t5-v1_1-base") and is_checkpoint_name(str(FIXTURE))
    assert not is_checkpoint_name("toy-t5") and not is_checkpoint_name("t5-huge")
    with pytest.raises(ValueError, match="unknown text encoder 't5-huge'.*google/t5-v1_1-base"):
        text_encoder("t5-huge")
    with pytest.raises(ValueError, match="unknown text encoder"):
        TrainConfig(workdir="w", text_encoder="t5-huge").validate()


def test_a_checkpoint_folder_is_a_text_encoder(tmp_path):
    folder = t5_checkpoint(tmp_path / "t5")
    encoder = text_encoder(str(folder), 16)
    assert encoder is text_encoder(str(folder), 16)  # loaded once per process
    emb, mask = encoder.encode(["the red digit 3 moving left", ""])
    assert emb.shape == (2, 16, 32) and mask[0].sum() == 7 and not mask[1].any()  # 6 words + EOS; the null prompt
    assert np.all(np.asarray(emb)[0, ~np.asarray(mask[0])] == 0) and np.abs(np.asarray(emb)[0, :7]).sum() > 0


def test_a_missing_checkpoint_is_named_before_anything_is_written(tmp_path, capsys):
    from ivlib.cli import main

    workdir = tmp_path / "run"
    assert main(["train", "--config", "toy", "--workdir", str(workdir), "--steps", "1",
                 "--text-encoder", str(tmp_path / "no-such-t5")]) != 0
    err = capsys.readouterr().err
    assert "no-such-t5" in err and "no such directory" in err
    assert not workdir.exists() or not any(workdir.iterdir())


def test_train_reads_the_checkpoint_it_is_given_and_caches_its_captions_on_disk(tmp_path):
    folder = t5_checkpoint(tmp_path / "t5")
    stage = Stage("tiny", "base", UNetConfig(4, 8, 8, (Level(8, 1, False, "conv"),), text_dim=32, head_dim=8,
                                             emb_dim=16))  # reads the tiny T5's width
    cfg = TrainConfig(workdir=str(tmp_path / "run"), steps=2, batch_size=4, checkpoint_every=1, log_every=1,
                      text_encoder=str(folder), max_text_length=16, dataset_options={"max_objects": 1})
    train(cfg, progress=False, stage=stage)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (recorded["text_encoder"], recorded["max_text_length"]) == (str(folder), 16)

    from ivlib.pretrained import trained_text

    assert trained_text("toy", "base", tmp_path / "run" / "ema.safetensors") == (str(folder), 16)
    cached = EmbeddingCache(text_encoder(str(folder), 16)).load(tmp_path / "run" / TEXT_CACHE)
    source = BatchSource(stage, cfg)
    captions = {source.dataset.params(i).caption for i in range(2 * 4)}
    assert captions <= set(cached._rows) and len(cached) > len(captions)  # the run's batches, and more ahead
    # a resumed run reads them back and encodes none of its first batches' captions again
    assert source.precompute_text(tmp_path / "run" / TEXT_CACHE) == 0
    resumed = dataclasses.replace(cfg, steps=3)
    train(resumed, progress=False, stage=stage)
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 3
