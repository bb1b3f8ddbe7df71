"""Embeddings computed once: a prompt -> (embeddings, mask) cache saved as .npz (chapter 04)."""

import jax.numpy as jnp
import numpy as np

from .encoder import TextEncoder
from .prompts import check_prompts


class EmbeddingCache:
    """prompt -> (emb (max_length, dim), mask (max_length,)) rows, encoded once (chapter 04).

    get(prompts) encodes only the prompts it has not seen, in one batched call, and returns the stacked
    rows; training steps read embeddings from here and never run the text encoder.
    """

    def __init__(self, encoder: TextEncoder):
        self.encoder = encoder
        self._rows: dict = {}

    def __len__(self):
        return len(self._rows)

    def __contains__(self, prompt):
        return prompt in self._rows

    def get(self, prompts):
        """prompts: list of B str -> (emb (B, max_length, dim) float32, mask (B, max_length) bool)."""
        prompts = check_prompts(prompts)
        misses = list(dict.fromkeys(p for p in prompts if p not in self._rows))
        if misses:
            emb, mask = self.encoder.encode(misses)
            for prompt, e, m in zip(misses, np.asarray(emb), np.asarray(mask)):
                self._rows[prompt] = (e, m)
        return (jnp.asarray(np.stack([self._rows[p][0] for p in prompts])),
                jnp.asarray(np.stack([self._rows[p][1] for p in prompts])))

    def save(self, path):
        """Write all rows, with the encoder's name, max_length and dim, to one .npz file at `path`."""
        prompts, length, dim = list(self._rows), self.encoder.max_length, self.encoder.dim
        emb = np.stack([self._rows[p][0] for p in prompts]) if prompts else np.zeros((0, length, dim), np.float32)
        mask = np.stack([self._rows[p][1] for p in prompts]) if prompts else np.zeros((0, length), bool)
        with open(path, "wb") as f:  # a file object: np.savez would otherwise append ".npz" to the name
            np.savez(f, prompts=np.array(prompts, dtype=str), encoder=np.array(self.encoder.name), emb=emb, mask=mask)

    def load(self, path) -> "EmbeddingCache":
        """Add the rows saved at `path`; they must come from an encoder of the same name, max_length and dim."""
        with np.load(path, allow_pickle=False) as data:
            if not {"prompts", "encoder", "emb", "mask"} <= set(data.files):
                raise ValueError(f"{path} is not an EmbeddingCache file (keys {sorted(data.files)})")
            name, emb, mask = str(data["encoder"]), data["emb"], data["mask"]
            expected = (self.encoder.max_length, self.encoder.dim)
            if name != self.encoder.name or emb.shape[1:] != expected:
                raise ValueError(f"{path} holds embeddings of encoder {name!r} with (max_length, dim)={emb.shape[1:]}, "
                                 f"but this cache's encoder is {self.encoder.name!r} with {expected}")
            for prompt, e, m in zip(data["prompts"].tolist(), emb, mask.astype(bool)):
                self._rows[prompt] = (e, m)
        return self
