"""Projections: a tower's pooled features into the shared space (linear, MLP or none)."""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError

__all__ = ["init_projection", "projection"]


def projection(kind: str, in_dim: int, out_dim: int, bias: bool) -> nn.Module:
    """Map a tower's pooled features into the shared space."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim, bias=bias)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim, bias=bias), nn.GELU(), nn.Linear(in_dim, out_dim, bias=bias))
    if kind == "none":
        if in_dim != out_dim:
            raise ConfigError(f"projection 'none' needs tower width {in_dim} == embed_dim {out_dim}")
        return nn.Identity()
    raise ConfigError(f"unknown projection {kind!r}: expected 'linear', 'mlp' or 'none'")


def init_projection(proj: nn.Module, width: int) -> None:
    for m in proj.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=width**-0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
