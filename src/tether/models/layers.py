"""Transformer building blocks shared by the image and text towers.

Attention uses one fused input projection (q, k and v in a single matmul) and
torch's fused ``scaled_dot_product_attention``; this is both the OpenAI/OpenCLIP
weight layout and the fastest layout on CPU and GPU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError


class QuickGELU(nn.Module):
    """OpenAI CLIP's sigmoid approximation of GELU: x * sigmoid(1.702 x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def activation(name: str) -> nn.Module:
    """The activation module for a config name."""
    if name == "quick_gelu":
        return QuickGELU()
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if name == "relu":
        return nn.ReLU()
    raise ConfigError(f"unknown activation {name!r}")


class Attention(nn.Module):
    """Multi-head attention with a fused qkv projection."""

    def __init__(self, width: int, heads: int, bias_kv: bool = False) -> None:
        super().__init__()
        if width % heads:
            raise ConfigError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.in_proj = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)
        # ImageBind's add_bias_kv: one learned key and value (already projected) appended to every sequence
        self.bias_k = nn.Parameter(torch.empty(1, 1, width)) if bias_kv else None
        self.bias_v = nn.Parameter(torch.empty(1, 1, width)) if bias_kv else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's ``nn.MultiheadAttention`` init (OpenCLIP's image tower keeps it): Xavier-uniform
        q/k/v weights (std ``(2 / (4 * width))**0.5``), zero biases; the output weight keeps
        ``nn.Linear``'s default."""
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:  # nn.MultiheadAttention(add_bias_kv=True)'s init
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

    def _with_bias_kv(self, k: torch.Tensor, v: torch.Tensor,
                      mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Append the learned key/value token to (B, heads, N, head_dim) keys and values; the mask lets every query see it."""
        if self.bias_k is None:
            return k, v, mask
        b, h, _, hd = k.shape
        k = torch.cat([k, self.bias_k.to(k.dtype).view(1, h, 1, hd).expand(b, -1, -1, -1)], dim=2)
        v = torch.cat([v, self.bias_v.to(v.dtype).view(1, h, 1, hd).expand(b, -1, -1, -1)], dim=2)
        if mask is not None:
            extra = mask.new_ones(mask.shape[:-1] + (1,)) if mask.dtype == torch.bool else \
                mask.new_zeros(mask.shape[:-1] + (1,))
            mask = torch.cat([mask, extra], dim=-1)
        return k, v, mask

    def forward(self, x: torch.Tensor, causal: bool = False,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.in_proj(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.bias_k is not None and causal and mask is None:  # the extra key sits past every position
            mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        k, v, mask = self._with_bias_kv(k, v, mask)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))

    def cross(self, query: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from ``query`` tokens to ``x`` (attention pooling; the last block at a pooled position)."""
        b, n, d = x.shape
        h, hd = self.heads, d // self.heads
        w_q, w_kv = self.in_proj.weight.split([d, 2 * d])
        b_q, b_kv = self.in_proj.bias.split([d, 2 * d])
        q = F.linear(query, w_q, b_q).view(b, query.shape[1], h, hd).transpose(1, 2)
        k, v = F.linear(x, w_kv, b_kv).view(b, n, 2, h, hd).permute(2, 0, 3, 1, 4).unbind(0)
        k, v, mask = self._with_bias_kv(k, v, mask)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, query.shape[1], d))


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = activation(act)
        self.fc2 = nn.Linear(hidden, width)
        self._quick_gelu = act == "quick_gelu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self._quick_gelu and not torch.is_grad_enabled():
            # Inference: gate in place. Saves two (tokens x hidden) allocations, the
            # largest tensors in the network; about 1.5x faster MLPs on CPU.
            return self.fc2(h.mul_(torch.sigmoid(h * 1.702)))
        return self.fc2(self.act(h))


class Block(nn.Module):
    """Pre-LayerNorm residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, mlp_dim: int, act: str, eps: float,
                 ls_init: float | None = None, bias_kv: bool = False, drop_path: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads, bias_kv)
        self.drop_path = drop_path  # stochastic depth: the rate at which training drops each residual branch
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, mlp_dim, act)
        # LayerScale (CaiT): per-channel gains on the residual branches, when ls_init is set
        self.ls_1 = nn.Parameter(torch.full((width,), float(ls_init))) if ls_init is not None else None
        self.ls_2 = nn.Parameter(torch.full((width,), float(ls_init))) if ls_init is not None else None

    def forward(self, x: torch.Tensor, causal: bool = False,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        a = self.attn(self.ln_1(x), causal=causal, mask=mask)
        x = x + self._drop(a if self.ls_1 is None else a * self.ls_1)
        m = self.mlp(self.ln_2(x))
        if self.ls_2 is not None:
            m = m * self.ls_2
        return x + self._drop(m) if torch.is_grad_enabled() else x.add_(self._drop(m))  # x made above: safe in place

    def _drop(self, branch: torch.Tensor) -> torch.Tensor:
        """Stochastic depth (timm's DropPath): zero a whole residual branch per sample, rescale the rest."""
        if not self.training or self.drop_path == 0:
            return branch
        keep = 1 - self.drop_path
        mask = branch.new_empty((branch.shape[0],) + (1,) * (branch.ndim - 1)).bernoulli_(keep)
        return branch * mask / keep


    def forward_at(self, x: torch.Tensor, index: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """The block's output at one position per row, (B, D), computing only what that needs.

        Keys and values still come from every token, but the query, the output
        projection and the MLP run for a single token: for a final block feeding a
        pooled output this skips most of its work with the same result.
        """
        rows = torch.arange(x.shape[0], device=x.device)
        h = self.ln_1(x)
        mask = None
        if causal:  # the pooled token sees itself and what precedes it
            mask = (torch.arange(x.shape[1], device=x.device) <= index[:, None])[:, None, None, :]
        a = self.attn.cross(h[rows, index].unsqueeze(1), h, mask)
        y = x[rows, index].unsqueeze(1) + self._drop(a if self.ls_1 is None else a * self.ls_1)
        m = self.mlp(self.ln_2(y))
        return (y + self._drop(m if self.ls_2 is None else m * self.ls_2))[:, 0]


class Transformer(nn.Module):
    """A stack of pre-LN blocks, with optional gradient checkpointing."""

    def __init__(self, width: int, layers: int, heads: int, mlp_dim: int | None,
                 act: str, eps: float, ls_init: float | None = None, bias_kv: bool = False,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = mlp_dim or 4 * width
        rates = [drop_path * i / max(layers - 1, 1) for i in range(layers)]  # ImageBind / timm: rising with depth
        self.blocks = nn.ModuleList(Block(width, heads, hidden, act, eps, ls_init, bias_kv, rate) for rate in rates)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, causal: bool = False, mask: torch.Tensor | None = None,
                pool_index: torch.Tensor | None = None) -> torch.Tensor:
        """All tokens (B, N, D); or, given ``pool_index`` (B,), only the final output at those positions (B, D)."""
        blocks = list(self.blocks)
        last = blocks.pop() if pool_index is not None and blocks and mask is None else None
        for block in blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, causal, mask, use_reentrant=False)
            else:
                x = block(x, causal=causal, mask=mask)
        if last is not None:
            return last.forward_at(x, pool_index, causal)
        if pool_index is not None:
            return x[torch.arange(x.shape[0], device=x.device), pool_index]
        return x


def clip_text_init_(transformer: Transformer) -> None:
    """OpenAI CLIP's text-transformer init (OpenCLIP's ``TextTransformer.init_parameters``).

    Normal weights: q/k/v with std ``width**-0.5``, the MLP input with ``(2 * width)**-0.5``,
    and the two projections back into the residual stream (attention output, MLP output)
    with ``width**-0.5 * (2 * layers)**-0.5``, so the residual stream's variance grows less
    with depth. Biases are left as they are (zero for attention, ``nn.Linear``'s for the MLP).
    """
    blocks = list(transformer.blocks)
    if not blocks:
        return
    width = blocks[0].ln_1.normalized_shape[0]
    attn_std, fc_std = width**-0.5, (2 * width) ** -0.5
    proj_std = attn_std * (2 * len(blocks)) ** -0.5
    for block in blocks:
        nn.init.normal_(block.attn.in_proj.weight, std=attn_std)
        nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
        nn.init.normal_(block.mlp.fc1.weight, std=fc_std)
        nn.init.normal_(block.mlp.fc2.weight, std=proj_std)


class AttentionPoolHead(nn.Module):
    """Multihead attention pooling (MAP): a learned probe attends over all tokens.

    This is SigLIP's image head: probe -> attention -> LayerNorm -> residual MLP.
    """

    def __init__(self, width: int, heads: int, mlp_dim: int | None, act: str, eps: float) -> None:
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, 1, width) * width**-0.5)
        self.attn = Attention(width, heads)
        self.norm = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, mlp_dim or 4 * width, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.attn.cross(self.probe.expand(x.shape[0], -1, -1), x)
        out = out + self.mlp(self.norm(out))
        return out[:, 0]
