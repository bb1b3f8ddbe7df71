"""Build the toy T5-style tokenizer shipped in ivlib/assets/text/toy_tokenizer.json (chapter 04).

T5's own SentencePiece vocabulary (32k pieces) cannot be downloaded here, so the offline default
text encoder uses this small, hand-written tokenizer instead (our choice, not the paper's):

* a WordPiece model (Hugging Face `tokenizers`) whose vocabulary is written out below: every word of
  the toy domain's captions (digits "0".."9" and "zero".."nine", colours, shapes, motions, styles,
  articles and connectives) is ONE token, so a caption's words map one-to-one onto tokens;
* a character-level fallback: single letters, digits and punctuation plus "##"-continuations of
  letters (and a few English suffixes), so any other English word is spelled out piece by piece
  instead of failing (a word holding a character outside this set becomes <unk>);
* lower-casing and accent stripping before splitting (the toy domain has no case; T5 itself is cased);
* T5's special ids: <pad> = 0, </s> (EOS) = 1, <unk> = 2, and EOS appended to every sequence.

Nothing is learned, so the file is fully determined by this script:

    .venv/bin/python scripts/make_tokenizer.py           # (re)write the shipped file
    .venv/bin/python scripts/make_tokenizer.py --check   # exit 1 if the shipped file differs
"""

import json
import os
import string
import sys

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ivlib", "assets", "text", "toy_tokenizer.json")

SPECIAL = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5
WORDS = {
    "digits": list("0123456789")
    + "zero one two three four five six seven eight nine ten digit digits number numbers handwritten".split(),
    "colours": "red green blue yellow magenta cyan white orange purple black gray grey pink brown "
    "colour color colored coloured bright dark light".split(),
    "shapes": "circle circles square squares triangle triangles shape shapes disc dot ring star "
    "rectangle object objects".split(),
    "motions": "moving move moves moved left right up down upward downward upwards downwards bouncing "
    "bounces bounce bouncy diagonally diagonal still static stationary standing rotating spinning "
    "growing shrinking zooming drifting sliding falling rising flying horizontally vertically "
    "back forth around across along slowly quickly fast slow speed motion steady "
    "top bottom corner center centre edge side sides wall walls frame frames".split(),
    "styles": "outlined outline striped stripes solid filled hollow dotted plain thick thin "
    "small large big tiny medium size".split(),
    "scene": "video videos image images picture clip background scene "
    "on off in into onto over under above below between behind through toward towards "
    "at from to of with without by for after before while then".split(),
    "function": "a an the and or but not no is are was were be being been it its this that these "
    "those there here each every both other another same different".split(),
}
SUFFIXES = ["##s", "##es", "##ed", "##ing", "##ly", "##er", "##est", "##tion"]
PUNCTUATION = list(string.punctuation)  # ! " # $ % & ' ( ) * + , - . / : ; < = > ? @ [ \ ] ^ _ ` { | } ~


def vocabulary():
    """The ordered token list: specials, domain words, then the character-level fallback."""
    tokens = list(SPECIAL)
    for group in WORDS.values():
        tokens += group
    tokens += list(string.ascii_lowercase) + PUNCTUATION
    tokens += ["##" + c for c in string.ascii_lowercase + string.digits] + SUFFIXES
    # A word holding a character that the pre-tokenizer splits off (a hyphen, an apostrophe) could never
    # be matched whole; drop them rather than ship dead entries.
    tokens = [t for t in tokens if t in SPECIAL or t.startswith("##") or len(t) == 1 or t.isalnum()]
    seen, ordered = set(), []
    for t in tokens:
        if t not in seen:
            seen.add(t)
            ordered.append(t)
    return ordered


def build_tokenizer():
    """The `tokenizers.Tokenizer`: lower-case, split on spaces, punctuation and digits, WordPiece, + </s>."""
    vocab = {token: i for i, token in enumerate(vocabulary())}
    tok = Tokenizer(WordPiece(vocab, unk_token="<unk>", continuing_subword_prefix="##", max_input_chars_per_word=100))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Digits(individual_digits=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    tok.decoder = decoders.WordPiece(prefix="##")
    for token in SPECIAL:
        tok.add_special_tokens([token])  # already in the vocabulary: marks them special, ids unchanged
    return tok


def main():
    tok = build_tokenizer()
    text = json.dumps(json.loads(tok.to_str()), indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    assert [tok.token_to_id(t) for t in SPECIAL] == [0, 1, 2]
    if "--check" in sys.argv:
        with open(OUT, encoding="utf-8") as f:
            same = f.read() == text
        print("shipped tokenizer is up to date" if same else f"{OUT} differs from what this script builds")
        sys.exit(0 if same else 1)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    enc = tok.encode("A red circle moving diagonally, and the digit 42 bouncing!")
    print(f"wrote {os.path.normpath(OUT)}: {tok.get_vocab_size()} tokens")
    print("example:", enc.tokens)


if __name__ == "__main__":
    main()
