"""Checking prompts before they are encoded (chapter 04): a list of strings, and words the encoder knows.

A real T5 has a subword vocabulary that spells any word, so it has no unknown words. The toy text encoder
reads the small language of the toy captions (`ivlib.data.captions.VOCABULARY`); its tokenizer spells
out any other word letter by letter, which the toy models never saw in training. "a purple 3" then gives
a video whose colour means nothing, with no word of why. `check_known_words` says so instead, naming the
nearest words the toy language has.
"""

import difflib

import numpy as np

from ivlib.data.captions import COLOURS, DIGITS, MOTION_PHRASES, SHAPES, SIZES, VOCABULARY


def check_prompts(prompts) -> list:
    """prompts: a list/tuple (or 1-D numpy array) of str -> list of str, else a ValueError saying what is wrong."""
    if isinstance(prompts, np.ndarray) and prompts.ndim == 1:
        prompts = prompts.tolist()
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        raise ValueError("prompts must be a list of strings (wrap one prompt as [prompt]), "
                         f"got {type(prompts).__name__}")
    if not prompts:
        raise ValueError("prompts is empty: pass at least one prompt (\"\" is the unconditional prompt)")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ValueError(f"prompts[{i}] must be a str, got {type(p).__name__}: {p!r}")
    return list(prompts)


def words_of(prompt: str, normalize=str.lower) -> list:
    """The words of a prompt as a BERT-style pre-tokenizer (the toy tokenizer's) splits it: at spaces, every
    punctuation mark a word of its own, after `normalize` (the tokenizer's normalizer: the toy one strips
    accents and lower-cases). "a red 3, moving left." -> ['a', 'red', '3', ',', 'moving', 'left', '.']."""
    from tokenizers.pre_tokenizers import BertPreTokenizer

    return [word for word, _ in BertPreTokenizer().pre_tokenize_str(normalize(prompt))]


# Everyday words a reader may try, by the kind of toy word that takes their place (our list, not the
# toy language's: it only steers the error message towards the right words).
_NUMBER_WORDS = dict(zip(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"), DIGITS))
_KINDS = {
    "colours": ("purple", "pink", "black", "brown", "grey", "gray", "violet", "gold", "golden", "silver", "indigo",
                "teal", "navy", "lime", "beige", "maroon", "turquoise", "crimson", "scarlet", "azure", "colour", "color"),
    "shapes": ("star", "rectangle", "oval", "ellipse", "hexagon", "pentagon", "diamond", "heart", "cross", "box",
               "ball", "dot", "disc", "disk", "ring", "cube", "sphere", "line", "shape", "object", "number", "numeral"),
    "sizes": ("large", "huge", "tiny", "little", "medium", "giant", "larger", "smaller", "bigger"),
    "motions": ("move", "moves", "going", "goes", "jumping", "jumps", "falling", "rising", "spinning", "rotating",
                "sliding", "flying", "running", "walking", "static", "stationary", "stopped", "stays", "bounce",
                "bounces", "sideways", "upward", "upwards", "downward", "downwards", "forward", "backward"),
}
_KNOWN = {"colours": tuple(COLOURS), "shapes": SHAPES + ("digit",), "sizes": SIZES,
          "motions": tuple(MOTION_PHRASES.values())}


def nearest_known_words(word: str) -> str:
    """The nearest words the toy language has to `word`, one it lacks, as a short note ("" if nothing is
    close): 'three' -> "try '3'", 'purple' -> "the colours it knows: red, green, ...", 'circel' -> "try 'circle'"."""
    if word in _NUMBER_WORDS:
        return f"try {_NUMBER_WORDS[word]!r}"
    if word.isdigit():
        return "one digit at a time: 0-9"
    for kind, words in _KINDS.items():
        if word in words:
            return f"the {kind} it knows: " + ", ".join(_KNOWN[kind])
    if len(word) == 1 and not word.isalnum():
        return "toy captions have no punctuation"
    close = difflib.get_close_matches(word, VOCABULARY, n=3, cutoff=0.6)
    return "try " + " or ".join(map(repr, close)) if close else ""


def unknown_words(prompts, vocabulary=VOCABULARY, normalize=str.lower) -> list:
    """The words of `prompts` (in order, each once) that are not in `vocabulary`; empty prompts have none."""
    known = set(vocabulary)
    found = [w for p in check_prompts(prompts) for w in words_of(p, normalize) if w not in known]
    return list(dict.fromkeys(found))


def check_known_words(prompts, vocabulary=VOCABULARY, normalize=str.lower,
                      hint="pass allow_unknown_words=True to sample them anyway"):
    """ValueError naming each word of `prompts` outside `vocabulary` (the toy language's words), with the
    nearest known words (chapter 04); returns the prompts as a list when every word is known. normalize:
    the tokenizer's normalizer (str -> str). hint: how to go ahead anyway, in the caller's terms (a keyword
    argument, a command-line flag)."""
    prompts = check_prompts(prompts)
    unknown = unknown_words(prompts, vocabulary, normalize)
    if not unknown:
        return prompts
    shown = [f"{w!r} ({near})" if (near := nearest_known_words(w)) else repr(w) for w in unknown[:8]]
    more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
    listing = ""
    if any(not nearest_known_words(w) for w in unknown):  # nothing close: list the language's words
        words = list(vocabulary)
        if set(DIGITS) <= set(words):  # the ten digits as one entry
            words = ["0-9" if w == DIGITS[0] else w for w in words if w not in DIGITS[1:]]
        listing = "; the words it knows: " + " ".join(words)
    raise ValueError(f"the toy text encoder does not know the word{'s' * (len(unknown) > 1)} {', '.join(shown)}{more}"
                     f"{listing}; it reads only the words of the toy captions, such as 'a red 7 moving left' "
                     f"({hint})")
