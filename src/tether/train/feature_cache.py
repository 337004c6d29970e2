"""Cache a locked tower's outputs (LiT): each distinct input is encoded once per run.

A locked tower has frozen weights and stays in eval mode (``optim.lock_tower``), so it maps
the same input to the same features every time. Re-encoding them every epoch is most of a LiT
step when the locked tower is the big one (EfficientNet at 224 px against a small text tower),
and the gradient cache encodes every batch twice. The cache sits in the tower's ``forward``:

- Keys are content digests (BLAKE2b, 128 bits) of each input row's bytes, with the row's
  dtype and shape and the autocast state. An augmented or re-decoded input that differs by one
  bit misses and is encoded, so the cache never serves a feature the tower would not compute
  for that exact input. Served rows are the bits of the batch that first encoded them; a fresh
  forward in another batch shape may round differently (BLAS blocking), so training with the
  cache matches training without bit for bit only when the shapes match, else to float32 rounding.
- Misses of a batch are encoded together, in one call of the real forward; hits are copied.
- Features are kept on the CPU up to ``max_mib``; after that new inputs are encoded but not
  stored (with cyclic epochs, evicting would only turn later hits into misses).
- The tower's ``state_dict``, parameters and module tree are untouched (the cache is an
  instance attribute), so checkpoints and ``save`` are the same with or without it.

Not for FSDP: there every submodule's forward is a collective, and ranks whose batches all hit
would skip the all-gathers the others wait for.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    entries: int = 0
    stored_bytes: int = 0

    def as_dict(self) -> dict:
        total = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses, "entries": self.entries,
                "stored_mib": round(self.stored_bytes / 2**20, 1),
                "hit_rate": round(self.hits / total, 4) if total else 0.0}


class LockedFeatureCache:
    """Replaces ``tower.forward``; call :func:`remove_feature_cache` to restore it."""

    def __init__(self, tower: nn.Module, max_mib: float) -> None:
        self.tower, self.compute = tower, tower.forward
        self.max_bytes = int(max_mib * 2**20)
        self.store: dict[tuple, torch.Tensor] = {}
        self.stats = CacheStats()

    def __call__(self, inputs=None, *args, **kwargs):
        if args or kwargs or not isinstance(inputs, torch.Tensor) or inputs.dim() == 0 \
                or inputs.requires_grad or self.tower.training:
            return self.compute(inputs, *args, **kwargs)   # not the plain batch call the cache knows
        keys = self._keys(inputs)
        missing = [i for i, key in enumerate(keys) if key not in self.store]
        self.stats.hits += len(keys) - len(missing)
        self.stats.misses += len(missing)
        if len(missing) == len(keys):
            out = self.compute(inputs)
            self._remember(keys, out)
            return out
        absent = set(missing)
        hits = [i for i in range(len(keys)) if i not in absent]
        cached = torch.stack([self.store[keys[i]] for i in hits]).to(inputs.device, non_blocking=True)
        if not missing:
            return cached
        fresh = self.compute(inputs[torch.tensor(missing, device=inputs.device)])
        self._remember([keys[i] for i in missing], fresh)
        out = fresh.new_empty((len(keys), *fresh.shape[1:]))
        out[torch.tensor(hits, device=out.device)] = cached.to(fresh.dtype)
        out[torch.tensor(missing, device=out.device)] = fresh
        return out

    def _keys(self, inputs: torch.Tensor) -> list[tuple]:
        rows = inputs.detach().reshape(inputs.shape[0], -1).contiguous().cpu()
        raw = rows.view(torch.uint8).numpy()
        context = (str(inputs.dtype), tuple(inputs.shape[1:]), _autocast_state(inputs.device))
        return [(context, hashlib.blake2b(raw[i], digest_size=16).digest()) for i in range(raw.shape[0])]

    def _remember(self, keys: list[tuple], out) -> None:
        if not isinstance(out, torch.Tensor) or out.shape[0] != len(keys):
            return                                          # a tower returning something else: pass through
        row_bytes = out[0].numel() * out.element_size() if len(keys) else 0
        if self.stats.stored_bytes + row_bytes > self.max_bytes:
            return                                          # full: no copy to the CPU for nothing
        rows = out.detach().to("cpu")
        for key, row in zip(keys, rows):
            size = row.numel() * row.element_size()
            if key in self.store or self.stats.stored_bytes + size > self.max_bytes:
                continue
            self.store[key] = row.clone()                   # own storage: not a view of the batch
            self.stats.stored_bytes += size
            self.stats.entries += 1


def _autocast_state(device: torch.device) -> tuple:
    try:
        if torch.is_autocast_enabled(device.type):
            return (device.type, str(torch.get_autocast_dtype(device.type)))
    except (TypeError, RuntimeError):
        pass
    return ()


def install_feature_cache(tower: nn.Module, max_mib: float) -> LockedFeatureCache:
    """Serve ``tower``'s outputs from a cache; the tower must be locked (frozen, eval mode)."""
    if any(p.requires_grad for p in tower.parameters()):
        raise ValueError("the feature cache is for a locked tower: this one still has trainable parameters")
    if max_mib <= 0:
        raise ValueError(f"max_mib must be positive, got {max_mib}")
    cache = tower.forward if isinstance(tower.forward, LockedFeatureCache) else LockedFeatureCache(tower, max_mib)
    tower.forward = cache
    return cache


def remove_feature_cache(tower: nn.Module) -> None:
    if isinstance(tower.forward, LockedFeatureCache):
        del tower.forward                                   # back to the class's forward
