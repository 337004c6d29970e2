"""Training configuration: one dataclass, read from YAML/JSON, overridden by ``--set``.

Every key is checked before training starts: an unknown key or a wrong type fails
with the key's dotted name, so a typo never silently trains the wrong thing.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import ConfigError, _build


@dataclass
class OptimConfig:
    lr: float = 5e-4
    min_lr: float = 0.0
    weight_decay: float = 0.2
    betas: tuple[float, ...] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 100
    grad_clip: float | None = 1.0


# the losses of `tether distill` (a student matching a frozen teacher; tether.losses.distill)
DISTILL_LOSSES = ("cosine", "l2", "kl")


@dataclass
class BindConfig:
    """Binding (ImageBind) or distillation: one tower trains against a frozen anchor (teacher) tower.

    Setting ``train.bind`` sets ``modalities`` to [modality, anchor] and ``lock`` to [anchor]; the
    anchor's projection, the shared logit scale and bias, and every tower outside the pair are
    frozen too, so the result is the loaded model, bit for bit, plus the trained tower.
    """

    modality: str = ""  # the tower that trains: a new modality, or a student
    anchor: str = "image"  # the frozen tower it is aligned to (the teacher)
    tower: dict[str, Any] = field(default_factory=dict)  # towers.<modality> to add when the model has none
    scale: float | None = None  # the pair's multiplier t; None: the modality's ImageBind value, else 1/0.07
    learn_scale: bool = False  # learn t (from `scale`) instead of keeping ImageBind's fixed temperature


# train.tokenizer: {"path": a saved tokenizer directory} or {"train_vocab_size": N} (a BPE trained on the captions)
TOKENIZER_KEYS = ("path", "train_vocab_size")


@dataclass
class TrainConfig:
    """What to train, on what, for how long, and where to write it."""

    model: str = "tiny-vit-28"  # an architecture (random init), a checkpoint path, a published name or a Hub id
    model_overrides: dict[str, Any] = field(default_factory=dict)  # top-level ModelConfig keys (named models)
    loss: str = "clip"  # "clip" (InfoNCE) | "siglip" | with bind: "cosine" | "l2" | "kl" (distillation)
    loss_chunk_size: int | None = None  # exact memory-efficient loss tiles; None = plain
    batch_size: int = 256
    micro_batch_size: int | None = None  # gradient cache: encode in pieces of this size
    steps: int = 1000
    optim: OptimConfig = field(default_factory=OptimConfig)
    precision: str = "fp32"  # "fp32" | "bf16" (autocast; GPU)
    compile: bool = False
    grad_checkpointing: bool = False
    strategy: str = "ddp"  # under torchrun: "ddp" | "fsdp" (sharded) | "manual" (average after backward)
    patch_dropout: float = 0.0
    modalities: list[str] = field(default_factory=lambda: ["image", "text"])  # the pair contrasted
    lock: list[str] = field(default_factory=list)  # LiT: towers to freeze, e.g. ["image"]; projections still train
    bind: BindConfig | None = None  # tether bind / distill: one tower against a frozen anchor (BindConfig)
    locked_feature_cache_mib: float = 1024.0  # LiT: serve the locked tower's outputs from RAM (0: off)
    row_cache_mib: float = 0.0  # bind/distill: processed rows of file inputs kept in RAM (0: off)
    train_data: dict[str, Any] = field(default_factory=dict)  # a data source spec
    val_data: dict[str, Any] = field(default_factory=dict)
    eval_templates: list[str] | None = None  # zero-shot prompts for val_data (default: its own templates)
    augment: bool = False  # random resized crops on training images
    tokenizer: dict[str, Any] = field(default_factory=dict)  # {"path": ...} or {"train_vocab_size": N}
    workers: int = 2
    seed: int = 0
    out_dir: str = "runs/tether"
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    eval_every: int = 0  # 0: only at the end
    log_every: int = 10
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1"
    tensorboard: bool = True
    resume_allow: list[str] = field(default_factory=list)  # keys that may differ from the checkpoint's run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        cfg = _build(cls, data, "train")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        def need(ok: bool, key: str, why: str) -> None:
            if not ok:
                raise ConfigError(f"train.{key}: {why}")
        need(self.loss in ("clip", "siglip", *DISTILL_LOSSES), "loss",
             f"expected one of clip, siglip, {', '.join(DISTILL_LOSSES)}, got {self.loss!r}")
        need(self.bind is not None or self.loss not in DISTILL_LOSSES, "loss",
             f"{self.loss!r} is a distillation loss: it needs train.bind (the frozen teacher), as tether distill sets")
        if self.bind is not None:
            self._validate_bind()
        need(self.batch_size > 0, "batch_size", "must be positive")
        need(self.micro_batch_size is None or self.micro_batch_size > 0, "micro_batch_size", "must be positive")
        need(self.steps > 0, "steps", "must be positive")
        need(self.precision in ("fp32", "bf16"), "precision", f"expected 'fp32' or 'bf16', got {self.precision!r}")
        need(self.strategy in ("ddp", "fsdp", "manual"), "strategy",
             f"expected 'ddp', 'fsdp' or 'manual', got {self.strategy!r}")
        need(0 <= self.patch_dropout < 1, "patch_dropout", "must be in [0, 1)")
        need(len(self.modalities) == 2 and len(set(self.modalities)) == 2, "modalities",
             f"expected two different modality names, got {self.modalities}")
        need(set(self.lock) <= set(self.modalities), "lock",
             f"expected names from modalities {self.modalities}, got {self.lock}")
        need(len(set(self.lock)) < 2, "lock", "locking both towers leaves nothing to align")
        need(self.locked_feature_cache_mib >= 0, "locked_feature_cache_mib", "must be >= 0 (0 turns the cache off)")
        need(self.row_cache_mib >= 0, "row_cache_mib", "must be >= 0 (0 turns the cache off)")
        need(self.optim.lr > 0, "optim.lr", "must be positive")
        need(len(self.optim.betas) == 2, "optim.betas", "needs two values")
        need(self.checkpoint_every > 0, "checkpoint_every", "must be positive")
        need(self.log_every > 0, "log_every", f"must be positive (log every N steps), got {self.log_every}")
        need(self.eval_every >= 0, "eval_every", f"must be >= 0 (0: only at the end), got {self.eval_every}")
        need(self.workers >= 0, "workers", f"must be >= 0, got {self.workers}")
        unknown = [k for k in self.resume_allow if not known_key(k)]
        need(not unknown, "resume_allow", f"unknown key {unknown[0]!r}" if unknown else "")
        self._validate_sections()

    def _validate_bind(self) -> None:
        """Binding fixes the pair and the lock: [modality, anchor], the anchor locked."""
        bind = self.bind
        if not bind.modality or not bind.anchor or bind.modality == bind.anchor:
            raise ConfigError(f"train.bind: expected a modality and a different anchor, got modality="
                              f"{bind.modality!r}, anchor={bind.anchor!r}")
        if self.loss == "siglip":
            raise ConfigError("train.loss=siglip: binding uses InfoNCE ('clip') or a distillation loss "
                              f"({', '.join(DISTILL_LOSSES)}); the anchor's sigmoid bias stays frozen")
        if bind.scale is not None and not 0 < bind.scale < float("inf"):
            raise ConfigError(f"train.bind.scale: expected a positive multiplier t, got {bind.scale}")
        if self.lock not in ([], [bind.anchor]):
            raise ConfigError(f"train.lock: binding locks the anchor {bind.anchor!r} itself; expected [] or "
                              f"[{bind.anchor!r}], got {self.lock}")
        self.modalities, self.lock = [bind.modality, bind.anchor], [bind.anchor]

    def _validate_sections(self) -> None:
        """The free-form sections: tokenizer, data specs and device, checked before any work starts."""
        from ..data.spec import check_source_spec
        from ..devices import parse_device
        unknown = sorted(set(self.tokenizer) - set(TOKENIZER_KEYS))
        if unknown:
            raise ConfigError(f"train.tokenizer: unknown key {unknown[0]!r} (known: {', '.join(TOKENIZER_KEYS)})")
        if len(self.tokenizer) > 1:
            raise ConfigError("train.tokenizer: give 'path' (a saved tokenizer) or 'train_vocab_size' (train a BPE), "
                              "not both")
        size = self.tokenizer.get("train_vocab_size", 8192)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"train.tokenizer.train_vocab_size: expected a positive integer, got {size!r}")
        for key in ("train_data", "val_data"):
            spec = getattr(self, key)
            if spec:
                try:
                    check_source_spec(spec)
                except ConfigError as err:
                    raise ConfigError(f"train.{key}: {err}") from err
        parse_device(self.device, "train.device")


def known_key(key: str) -> bool:
    """Whether ``key`` (dotted) names a TrainConfig key or a part of one (``resume_allow`` entries)."""
    head, _, rest = key.partition(".")
    if head == "optim" and rest:
        return rest in {f.name for f in fields(OptimConfig)}
    return head in {f.name for f in fields(TrainConfig)} and \
        (not rest or head in ("model_overrides", "train_data", "val_data", "tokenizer", "bind"))


def load_train_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML or JSON file (or start from defaults) and apply ``key.sub=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_config_file(path)
    for item in overrides:
        apply_override(data, item)
    try:
        return TrainConfig.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path or 'config'}: {err}") from err


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or JSON config file's mapping; a syntax error names the file, line and column."""
    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith((".yaml", ".yml")):
        import yaml
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
            what = " ".join(str(getattr(err, "problem", None) or err).split())
            raise ConfigError(f"{path}: YAML syntax error at {where}: {what}") from err
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: JSON syntax error at line {err.lineno}, column {err.colno}: "
                              f"{err.msg}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, found "
                          f"{type(data).__name__}")
    return data


def apply_override(data: dict[str, Any], item: str) -> None:
    """``optim.lr=1e-3`` -> data["optim"]["lr"] = 0.001 (values parsed as JSON when they can be)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = value
