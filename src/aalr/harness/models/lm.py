"""A small causal transformer over bytes, for the byte-level language-model task (``shakespeare``).

``byte-transformer``: byte embedding (256) plus a learned position embedding, ``layers`` pre-norm
blocks of torch's :class:`~torch.nn.TransformerEncoderLayer` (causal self-attention with ``heads`` heads,
an MLP of ``mlp_ratio`` x ``d_model`` with GELU), a final LayerNorm and a linear head to 256 logits.
Built from torch.nn blocks only (no ``transformers`` dependency).

It takes int64 byte ids ``(B, T)`` with ``T`` at most the context it was built for (the data's window,
``input_shape = (T,)``), and returns logits ``(B, 256, T)``: the class dimension second, as
``F.cross_entropy`` takes it with targets ``(B, T)``, so the harness's losses and accuracy need no
reshaping.

Defaults (2 layers, d_model 64, 4 heads, MLP 256, context 64): 137k parameters, sized so that one
AdamW step on a batch of 32 windows of 64 bytes takes 33-39 ms on one thread of this machine's CPU
(3 layers of d_model 128, 0.67M parameters, took 120-130 ms; 3 of 64, 46-53 ms).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

VOCABULARY = 256


class ByteTransformer(nn.Module):
    """See the module docstring."""

    causal_mask: Tensor

    def __init__(
        self, context: int, layers: int, d_model: int, heads: int, mlp_ratio: int, dropout: float
    ) -> None:
        super().__init__()
        self.context = context
        self.embed = nn.Embedding(VOCABULARY, d_model)
        self.position = nn.Embedding(context, d_model)
        self.drop = nn.Dropout(dropout)
        block = nn.TransformerEncoderLayer(
            d_model,
            heads,
            dim_feedforward=mlp_ratio * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, VOCABULARY)
        # a buffer that is not saved: every model of one context has it, so it is no part of a checkpoint
        mask = torch.triu(torch.full((context, context), float("-inf")), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        length = tokens.shape[1]
        if length > self.context:
            raise ValueError(
                f"byte-transformer: a window of {length} bytes exceeds its context {self.context}"
            )
        positions = torch.arange(length, device=tokens.device)
        h = self.drop(self.embed(tokens) + self.position(positions))
        h = self.blocks(h, mask=self.causal_mask[:length, :length], is_causal=True)
        return self.head(self.norm(h)).transpose(1, 2)


def byte_transformer(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    layers: int = 2,
    d_model: int = 64,
    heads: int = 4,
    mlp_ratio: int = 4,
    dropout: float = 0.0,
) -> nn.Module:
    """The byte transformer for windows of ``input_shape = (T,)`` bytes and 256 classes."""
    if num_classes != VOCABULARY:
        raise ValueError(
            f"byte-transformer predicts bytes: num_classes must be {VOCABULARY}, got {num_classes}"
        )
    if len(input_shape) != 1:
        raise ValueError(
            f"byte-transformer takes windows of bytes, input_shape (T,) (a byte data set such as "
            f"shakespeare); got {input_shape}"
        )
    for option, value in (
        ("layers", layers),
        ("d_model", d_model),
        ("heads", heads),
        ("mlp_ratio", mlp_ratio),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"byte-transformer: {option} must be an int >= 1, got {value!r}")
    if d_model % heads:
        raise ValueError(f"byte-transformer: d_model {d_model} must be a multiple of heads {heads}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"byte-transformer: dropout must be a number in [0, 1), got {dropout!r}")
    return ByteTransformer(input_shape[0], layers, d_model, heads, mlp_ratio, float(dropout))
