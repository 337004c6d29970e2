"""Hugging Face transformers checkpoints: ``CLIPModel`` and ``SiglipModel`` directories.

    config.json                 model_type "clip" or "siglip", vision_config / text_config
    model.safetensors           weights (or pytorch_model.bin, or a sharded *.index.json)
    preprocessor_config.json    image size, mean/std, resampling (optional)
    tokenizer files             tokenizer.json, CLIP's vocab.json + merges.txt or spiece.model (optional)

``load`` builds the tether config from transformers' config (no transformers needed),
renames the weights and joins q/k/v into tether's fused ``in_proj``; ``save`` does the
reverse and writes a directory ``CLIPModel.from_pretrained`` / ``SiglipModel.from_pretrained``
loads with the same outputs. The key maps live in ``hf_clip`` and ``hf_siglip``.
"""
from __future__ import annotations

import json
import math
import string
import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, ModelConfig
from ..io import atomic_directory, atomic_save_safetensors
from . import hf_clip, hf_siglip
from .common import CheckpointError, load_into, read_weights

FAMILIES = {"clip": hf_clip, "siglip": hf_siglip}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# Buffers older transformers saved with the weights; derived, never loaded.
IGNORED_SUFFIXES = (".position_ids",)
RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL codes in preprocessor_config.json
RESAMPLE_TO_HF = {"bilinear": 2, "bicubic": 3}


# ---------------------------------------------------------------- detect
def _read_config(path: Path) -> dict[str, Any]:
    file = path / "config.json"
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    return data


def detect(path: Path) -> bool:
    path = Path(path)
    if not (path.is_dir() and (path / "config.json").is_file()):
        return False
    try:
        return _read_config(path).get("model_type") in FAMILIES
    except (OSError, ValueError):  # CheckpointError is a ValueError, as is a bad encoding
        return False


# ---------------------------------------------------------------- weights
def _read_hf_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict and a name for messages; sharded checkpoints are joined."""
    for name in WEIGHT_FILES:
        file = path / name
        if not file.is_file():
            continue
        if not name.endswith(".index.json"):
            return read_weights(file), str(file)
        try:
            weight_map = json.loads(file.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{file}: not a shard index with a 'weight_map' ({err})") from err
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            if not (path / shard).is_file():
                raise CheckpointError(f"{file}: lists shard {shard!r}, which is not in {path}")
            state.update(read_weights(path / shard))
        return state, str(file)
    found = sorted(p.name for p in path.iterdir())
    raise CheckpointError(f"{path}: no weights file; expected one of {', '.join(WEIGHT_FILES)} "
                          f"next to config.json (found: {', '.join(found)})")


def _hf_shapes(own: dict[str, torch.Tensor], rules: list) -> dict[str, tuple[int, ...]]:
    """The shape each HF key must have for this tether model."""
    shapes = {}
    for t, hs, shape in rules:
        s = tuple(own[t].shape)
        for h in hs:
            shapes[h] = (s[0] // len(hs), *s[1:]) if len(hs) > 1 else (shape if shape is not None else s)
    return shapes


def _to_tether(state: dict[str, torch.Tensor], rules: list, own: dict[str, torch.Tensor],
               source: str) -> dict[str, torch.Tensor]:
    expected = _hf_shapes(own, rules)
    missing = [h for h in expected if h not in state]
    unexpected = [k for k in state if k not in expected and not k.endswith(IGNORED_SUFFIXES)]
    if missing or unexpected:
        parts = [f"missing {len(missing)} key(s), e.g. {missing[:3]}"] if missing else []
        parts += [f"unexpected {len(unexpected)} key(s), e.g. {unexpected[:3]}"] if unexpected else []
        raise CheckpointError(f"{source}: weights do not fit config.json: " + "; ".join(parts))
    for h, want in expected.items():
        got = tuple(state[h].shape)
        if got != want and not (len(want) <= 1 and len(got) <= 1 and state[h].numel() == math.prod(want)):
            raise CheckpointError(f"{source}: key {h!r} expected shape {want} (from config.json), found {got}")
    out = {}
    for t, hs, shape in rules:
        value = torch.cat([state[h] for h in hs]) if len(hs) > 1 else state[hs[0]]
        out[t] = value.reshape(own[t].shape) if shape is not None else value
    return out


def _to_hf(own: dict[str, torch.Tensor], rules: list) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for t, hs, shape in rules:
        value = own[t].detach()
        parts = value.chunk(len(hs)) if len(hs) > 1 else [value.reshape(shape) if shape is not None else value]
        out.update({h: p.clone().contiguous() for h, p in zip(hs, parts)})  # no shared storage in safetensors
    left = sorted(set(own) - {t for t, _, _ in rules})
    if left:
        raise CheckpointError(f"tether weights {left[:3]} have no Hugging Face equivalent")
    return out


# ---------------------------------------------------------------- preprocessing
def _preprocess_from_hf(path: Path, family: str, image_size: int) -> dict[str, Any]:
    """tether's preprocess settings from preprocessor_config.json, else the family preset."""
    from ..preprocess import PreprocessConfig

    out = PreprocessConfig.preset(family, image_size).to_dict()
    file = path / "preprocessor_config.json"
    if not file.is_file():
        return out
    try:
        pp = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file}: not valid JSON ({err})") from err

    def triple(key: str, default: list[float]) -> list[float]:
        value = pp.get(key, default)
        value = [value] * 3 if isinstance(value, (int, float)) else list(value)
        return value * 3 if len(value) == 1 else value

    if pp.get("do_normalize", True):
        out["mean"], out["std"] = triple("image_mean", out["mean"]), triple("image_std", out["std"])
    else:
        out["mean"], out["std"] = [0.0] * 3, [1.0] * 3
    resample = pp.get("resample", 3)
    if resample not in RESAMPLE:
        warnings.warn(f"{file}: resample={resample!r} is not bilinear (2) or bicubic (3); tether uses bicubic")
    out["interpolation"] = RESAMPLE.get(resample, "bicubic")
    size, crop = pp.get("size"), pp.get("crop_size")
    if isinstance(size, dict) and "shortest_edge" in size:
        out["resize_mode"], side = "shortest", size["shortest_edge"]
    elif isinstance(size, dict) and "height" in size:
        out["resize_mode"], side = "squash", size["height"]
        if size.get("width", side) != side:
            warnings.warn(f"{file}: size {size} is not square; tether resizes to {side}x{side}")
    else:
        side = size if isinstance(size, int) else image_size
    if isinstance(crop, dict):
        crop = crop.get("height")
    if pp.get("do_center_crop", crop is not None) and isinstance(crop, int):
        if out["resize_mode"] == "shortest" and crop != side:
            warnings.warn(f"{file}: resizes to {side} then crops {crop}; tether resizes straight to {crop}")
        side = crop
    out["image_size"] = side
    return out


def _preprocess_to_hf(pre: dict[str, Any], family: str) -> dict[str, Any]:
    s = pre["image_size"]
    out: dict[str, Any] = dict(do_resize=True, resample=RESAMPLE_TO_HF[pre["interpolation"]], do_rescale=True,
                               rescale_factor=1 / 255, do_normalize=True, image_mean=list(pre["mean"]),
                               image_std=list(pre["std"]), do_convert_rgb=True)
    if pre["resize_mode"] == "shortest":
        out.update(image_processor_type="CLIPImageProcessor", size={"shortest_edge": s}, do_center_crop=True,
                   crop_size={"height": s, "width": s})
    elif family == "siglip":
        out.update(image_processor_type="SiglipImageProcessor", size={"height": s, "width": s})
    else:
        out.update(image_processor_type="CLIPImageProcessor", size={"height": s, "width": s}, do_center_crop=False)
    return out


# ---------------------------------------------------------------- load
def _has_tokenizer(path: Path) -> bool:
    """tokenizer.json, CLIP's vocab.json + merges.txt, or SigLIP's spiece.model."""
    return any((path / n).is_file() for n in ("tokenizer.json", "spiece.model")) or (
        (path / "vocab.json").is_file() and (path / "merges.txt").is_file())


def load(path: Path, map_location: str = "cpu"):
    """A tether AlignedModel with the checkpoint's weights, preprocessing and (if readable) tokenizer."""
    from ..models.aligned import AlignedModel
    from ..models.attach import attach_processors

    path = Path(path)
    raw = _read_config(path)
    family = raw.get("model_type")
    if family not in FAMILIES:
        raise CheckpointError(f"{path / 'config.json'}: model_type={family!r}; tether reads 'clip' and 'siglip'")
    mod = FAMILIES[family]
    data = mod.config_from_hf(raw)
    image = data["towers"]["image"]
    image["processor"] = _preprocess_from_hf(path, family, image["processor"]["image_size"])
    try:
        config = ModelConfig.from_dict(data).validate()
    except ConfigError as err:
        raise CheckpointError(f"{path / 'config.json'}: {err}") from err
    state, source = _read_hf_weights(path)  # before building: a missing file fails fast
    model = AlignedModel(config)
    own = model.state_dict()
    load_into(model, _to_tether(state, mod.rules(model), own, source), source)
    scale = float(model.logit_scale.detach().exp())
    if scale > config.max_logit_scale:  # transformers never clamps; keep its scale
        config.max_logit_scale = float(math.ceil(scale))
    try:
        attach_processors(model, {"text": path} if _has_tokenizer(path) else None)
    except (OSError, ValueError, KeyError) as err:
        warnings.warn(f"{path}: tokenizer files not readable by tether ({err}); model.tokenizer is None")
        attach_processors(model, None)
    return model.to(map_location).eval()


# ---------------------------------------------------------------- save
def eos_swap(cfg, tok) -> tuple[int, int] | None:
    """The ids to exchange so a CLIP pooling at end-of-text id 2 survives export, else None.

    transformers reads ``eos_token_id == 2`` as legacy argmax pooling (tether's BPE puts its
    end-of-text token at 2), so the exported vocabulary swaps ids 2 and k (the last id the
    tokenizer and embedding table share): rows of the token embedding and tokenizer entries
    alike, and ``eos_token_id`` becomes k. Text -> embedding is unchanged.
    """
    v, t = hf_clip.image_text(cfg)
    if v.pool == "map" or t.pool != "eot" or t.eot_token_id != 2:
        return None
    k = min(t.vocab_size, tok.vocab_size if tok is not None else t.vocab_size) - 1
    if k <= 2:
        raise CheckpointError(f"cannot save as a Hugging Face clip model: towers.text.eot_token_id=2 reads as legacy argmax "
                              f"pooling in transformers, and a vocabulary of {k + 1} has no other id to move it to")
    return 2, k


def _swap_tokenizer(tok, a: int, b: int):
    """A copy of tether tokenizer ``tok`` whose ids a and b are exchanged."""
    import tokenizers

    from ..tokenizer import Tokenizer

    data = json.loads(tok.backend.to_str())
    vocab = data["model"].get("vocab")
    if isinstance(vocab, dict):  # BPE, WordPiece, WordLevel: token -> id
        names = {i: name for name, i in vocab.items()}
        if a not in names or b not in names:
            raise CheckpointError(f"cannot renumber the tokenizer: ids {a} and {b} are not both in its vocabulary")
        vocab[names[a]], vocab[names[b]] = b, a
    elif isinstance(vocab, list):  # Unigram: position = id
        vocab[a], vocab[b] = vocab[b], vocab[a]
    else:
        raise CheckpointError(f"cannot renumber a {data['model'].get('type')} tokenizer")
    swap = {a: b, b: a}
    for added in data.get("added_tokens") or []:
        added["id"] = swap.get(added["id"], added["id"])
    if data["model"].get("unk_id") in swap:
        data["model"]["unk_id"] = swap[data["model"]["unk_id"]]
    data["post_processor"] = None  # rebuilt by _save_tokenizer with the new ids
    backend = tokenizers.Tokenizer.from_str(json.dumps(data))
    ids = {k: (None if getattr(tok, k) is None else swap.get(getattr(tok, k), getattr(tok, k)))
           for k in ("bos_id", "eos_id", "pad_id")}
    return Tokenizer(backend, tok.context_length, **ids, padding=tok.padding, lowercase=tok.lowercase,
                     clean=tok.clean, keep_eos_on_truncate=tok.keep_eos_on_truncate)


def _save_tokenizer(tok, directory: Path) -> None:
    """tether's tokenizer files, made loadable by transformers' AutoTokenizer as well.

    tokenizer.json gets the specials (bos/eos) as a post-processor and tether's Python-side
    cleanup (lowercase, punctuation removal, whitespace) as normalizers; tether itself encodes
    without specials and its cleanup is idempotent, so both read the same ids.
    """
    import tokenizers
    from tokenizers import Regex, normalizers, processors

    tok.save(directory)
    backend = tokenizers.Tokenizer.from_str(tok.backend.to_str())
    extra: list = []
    if tok.lowercase:
        extra.append(normalizers.Lowercase())
    if tok.clean == "canonicalize":
        punct = "".join("\\" + c for c in string.punctuation)
        extra.append(normalizers.Replace(Regex(f"[{punct}]"), ""))
    if tok.clean != "none":
        extra += [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    if extra:
        backend.normalizer = normalizers.Sequence(extra + ([backend.normalizer] if backend.normalizer else []))
    name = backend.id_to_token
    specials = [(name(i), i) for i in (tok.bos_id, tok.eos_id) if i is not None]
    head = f"{name(tok.bos_id)} " if tok.bos_id is not None else ""
    backend.post_processor = processors.TemplateProcessing(
        single=f"{head}$A {name(tok.eos_id)}", pair=f"{head}$A {name(tok.eos_id)} $B:1 {name(tok.eos_id)}:1",
        special_tokens=sorted(set(specials), key=lambda x: x[1]))
    backend.save(str(directory / "tokenizer.json"))
    cfg = json.loads((directory / "tokenizer_config.json").read_text())
    unk = json.loads(tok.backend.to_str())["model"].get("unk_token")
    cfg.update(tokenizer_class="PreTrainedTokenizerFast", bos_token=name(tok.bos_id) if tok.bos_id is not None
               else None, eos_token=name(tok.eos_id), pad_token=name(tok.pad_id), unk_token=unk,
               model_max_length=tok.context_length, padding_side="right", truncation_side="right")
    (directory / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def save(model, path: Path) -> None:
    """Write ``path`` as a transformers CLIPModel / SiglipModel directory, atomically."""
    from ..preprocess import PreprocessConfig

    path, cfg = Path(path), model.config
    image, text = hf_clip.image_text(cfg)
    if image.kind != "vit" or text.kind != "transformer":
        raise CheckpointError(f"cannot save as Hugging Face CLIP/SigLIP: towers.image.kind={image.kind!r}, "
                              f"towers.text.kind={text.kind!r}; transformers' CLIPModel and SiglipModel have a ViT "
                              "image tower and a transformer text tower")
    family = "siglip" if image.pool == "map" else "clip"
    mod = FAMILIES[family]
    bad = mod.check_exportable(cfg)
    if bad:
        raise CheckpointError(f"cannot save as a Hugging Face {family} model: " + "; ".join(bad))
    if model.preprocessor is not None:
        pre = model.preprocessor.config.to_dict()
    else:
        pre = PreprocessConfig.from_dict({**PreprocessConfig.preset(family, image.image_size).to_dict(),
                                          **image.processor}).to_dict()
    grid = image.image_size // image.patch_size
    # the input size transformers checks; a so400m-style 384 for patch 14 keeps the same 27x27 grid
    image_size = pre["image_size"] if pre["image_size"] // image.patch_size == grid else image.image_size
    tok = model.tokenizer
    ids = {"bos": getattr(tok, "bos_id", None), "eos": getattr(tok, "eos_id", None)}  # tether's numbering
    state = _to_hf(model.state_dict(), mod.rules(model))
    swap = eos_swap(cfg, tok)
    remap = lambda i: i  # noqa: E731
    if swap is not None:
        a, b = swap
        remap = lambda i: {a: b, b: a}.get(i, i)  # noqa: E731
        emb = state["text_model.embeddings.token_embedding.weight"]
        emb[[a, b]] = emb[[b, a]]
        if tok is not None:
            tok = _swap_tokenizer(tok, a, b)
        else:
            warnings.warn(f"text pooling at id 2 reads as legacy argmax pooling in transformers: the exported model "
                          f"has token ids 2 and {b} swapped (eos_token_id={b}); attach the tokenizer "
                          "(model.tokenizer) to export it swapped alike")
    hf_cfg = mod.config_to_hf(model, image_size, ids, remap)
    hf_cfg["dtype"] = str(next(iter(state.values())).dtype).removeprefix("torch.")
    if float(model.logit_scale.detach().exp()) > cfg.max_logit_scale:
        warnings.warn(f"exp(logit_scale) exceeds max_logit_scale={cfg.max_logit_scale}; transformers does not "
                      "clamp, so its logits will be larger than tether's")

    with atomic_directory(path) as tmp:
        (tmp / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")
        atomic_save_safetensors(state, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "preprocessor_config.json").write_text(json.dumps(_preprocess_to_hf(pre, family), indent=2) + "\n")
        if tok is not None:
            _save_tokenizer(tok, tmp)
