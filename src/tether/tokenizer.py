"""Text -> fixed-length token-id tensors for the text tower of an aligned image/text model.

Built on the ``tokenizers`` library only (no ``transformers`` at runtime).  Two layouts are supported:

* CLIP (``padding="zeros"``): ``[bos, t1 .. tk, eos, pad, pad, ...]``; OpenAI CLIP pads with 0, Hugging Face
  checkpoints pad with ``<|endoftext|>``.  The text tower pools at the (first) eos position.
* SigLIP (``padding="max_length"``): ``[t1 .. tk, eos, pad, ...]`` with no bos; the tower attends to the pads
  and pools the last position, so every row must be exactly ``context_length`` long.

Both layouts produce the same ids (pad_id after eos up to ``context_length``); ``padding`` records which
convention the tower follows.  Rows are always ``(N, context_length)``.  Over-long text is truncated *and the
eos is kept as the last id* (``keep_eos_on_truncate=True``): OpenAI CLIP, transformers' CLIP/SigLIP with
``truncation=True`` and big_vision's ``eos="sticky"`` all do this, and a tower that looks for eos needs it.
"""

from __future__ import annotations

import json
import re
import string
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import tokenizers
import torch
from tokenizers import Regex, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE, Unigram

from .bpe import learn_bpe
from .errors import ConfigError, TokenizerError
from .io import atomic_file, atomic_write_json

__all__ = ["Tokenizer", "clip_style_bpe", "spm_unigram"]

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
TRAIN_PAD = "<pad>"
EOW = "</w>"
# OpenAI CLIP's word split, as used by transformers' CLIPTokenizer (digits are split one by one).
CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
PADDINGS = ("zeros", "max_length")
CLEANS = ("whitespace", "canonicalize", "none")
CONFIG_FORMAT = "tether.tokenizer/1"
_WS = re.compile(r"\s+")
_PUNCT = str.maketrans("", "", string.punctuation)


def clip_style_bpe(vocab: dict[str, int], merges: list[tuple[str, str]], *,
                   lowercase: bool = True) -> tokenizers.Tokenizer:
    """OpenAI CLIP's byte-level BPE pipeline (same as transformers' CLIPTokenizer), so ids match exactly.

    NFC + whitespace collapse (+ lowercase), CLIP's regex word split, byte-level alphabet, '</w>' end-of-word
    suffix.  CLIP's bos/eos/'<pad>' present in ``vocab`` become special tokens (matched verbatim in text,
    as in OpenAI's and HF's tokenizers).  ``<|endoftext|>`` doubles as unk, as in HF.
    """
    unk = CLIP_EOS if CLIP_EOS in vocab else None
    model = BPE(vocab=dict(vocab), merges=[tuple(m) for m in merges], unk_token=unk, end_of_word_suffix=EOW,
                continuing_subword_prefix="", fuse_unk=False, dropout=None)
    tok = tokenizers.Tokenizer(model)
    norms: list[normalizers.Normalizer] = [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " ")]
    if lowercase:
        norms.append(normalizers.Lowercase())
    tok.normalizer = normalizers.Sequence(norms)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([s for s in (TRAIN_PAD, CLIP_BOS, CLIP_EOS) if s in vocab])
    return tok


def _token_str(value: Any) -> str | None:
    """HF configs store special tokens either as strings or as serialized AddedToken dicts."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    """A tokenizer JSON file's object ({} when there is no such file); a damaged one names the file."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TokenizerError(f"{path}: not valid JSON ({err}); the tokenizer files are damaged") from err
    if not isinstance(data, dict):
        raise TokenizerError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _backend_from_file(path: Path) -> tokenizers.Tokenizer:
    """A ``tokenizers`` backend from a tokenizer.json; a damaged or foreign file names itself."""
    try:
        return tokenizers.Tokenizer.from_str(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise TokenizerError(f"{path}: not a tokenizer.json (not UTF-8 text: {err})") from err
    except Exception as err:  # the Rust library raises a bare Exception naming no file
        raise TokenizerError(f"{path}: not a readable tokenizer.json ({err})") from err


def _read_merges(path: Path) -> list[tuple[str, str]]:
    """CLIP merges.txt: optional '#version' header, then one 'left right' pair per line."""
    merges = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#version"):
            continue
        left, right = line.split(" ")
        merges.append((left, right))
    return merges


def _pb_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Minimal protobuf wire-format reader (enough for sentencepiece's ModelProto; no protobuf dependency)."""
    def varint(i: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            b = buf[i]
            value, shift, i = value | (b & 0x7F) << shift, shift + 7, i + 1
            if b < 0x80:
                return value, i
    i = 0
    while i < len(buf):
        key, i = varint(i)
        wire = key & 7
        if wire == 0:
            val, i = varint(i)
        elif wire == 2:
            n, i = varint(i)
            val, i = buf[i:i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            val, i = buf[i:i + n], i + n
        else:
            raise TokenizerError(f"unsupported protobuf wire type {wire}")
        yield key >> 3, val


def spm_unigram(path: str | Path) -> tokenizers.Tokenizer:
    """A sentencepiece Unigram model (SigLIP's spiece.model) as a ``tokenizers`` pipeline, without sentencepiece.

    Mirrors transformers' SpmConverter: precompiled normalizer, extra-space removal, '▁' dummy prefix.
    """
    pieces: list[tuple[str, float]] = []
    specials: list[str] = []
    trainer: dict[int, Any] = {}
    norm: dict[int, Any] = {}
    for field, val in _pb_fields(Path(path).read_bytes()):
        if field == 1:  # SentencePiece: 1 piece, 2 score (float), 3 type (2 unknown, 3 control, 4 user-defined)
            piece = dict(_pb_fields(val))  # type: ignore[arg-type]
            text, kind = piece[1].decode("utf-8"), piece.get(3, 1)
            pieces.append((text, struct.unpack("<f", piece[2])[0] if 2 in piece else 0.0))
            if kind in (2, 3, 4):
                specials.append(text)
        elif field in (2, 3):
            (trainer if field == 2 else norm).update(_pb_fields(val))  # type: ignore[arg-type]
    if trainer.get(3, 1) != 1:
        raise TokenizerError(f"{path}: only sentencepiece Unigram models are supported (model_type={trainer[3]})")
    tok = tokenizers.Tokenizer(Unigram(pieces, unk_id=trainer.get(40, 0), byte_fallback=bool(trainer.get(35, 0))))
    norms: list[normalizers.Normalizer] = [normalizers.Precompiled(norm[2])] if norm.get(2) else []
    if norm.get(4, 1):  # remove_extra_whitespaces
        norms += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(norms)
    scheme = "always" if norm.get(3, 1) else "never"  # add_dummy_prefix
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
    tok.add_special_tokens(specials)
    return tok


class Tokenizer:
    """Text -> fixed-length id tensors for an aligned text tower."""

    def __init__(self, backend: tokenizers.Tokenizer, context_length: int, *, bos_id: int | None, eos_id: int,
                 pad_id: int, padding: str = "zeros", lowercase: bool = False, clean: str = "whitespace",
                 keep_eos_on_truncate: bool = True) -> None:
        if padding not in PADDINGS:
            raise TokenizerError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if clean not in CLEANS:
            raise TokenizerError(f"clean must be one of {CLEANS}, got {clean!r}")
        n = backend.get_vocab_size(with_added_tokens=True)
        for name, value in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
            if value is not None and not 0 <= value < n:
                raise TokenizerError(f"{name}={value} is outside the vocabulary (size {n})")
        self.backend = backend
        # tether truncates and pads itself; settings baked into a tokenizer.json would fight with that.
        backend.no_truncation()
        backend.no_padding()
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.padding, self.lowercase, self.clean = padding, lowercase, clean
        self.keep_eos_on_truncate = keep_eos_on_truncate
        self.context_length = self._check_length(context_length)

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size}, context_length={self.context_length}, bos_id={self.bos_id}, "
                f"eos_id={self.eos_id}, pad_id={self.pad_id}, padding={self.padding!r})")

    @property
    def vocab_size(self) -> int:
        """Number of ids the embedding table must cover (added tokens included)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def _check_length(self, length: int) -> int:
        need = 1 + (self.bos_id is not None)
        if not isinstance(length, int) or isinstance(length, bool) or length < need:
            raise TokenizerError(f"context_length must be an int >= {need} (room for the special tokens), "
                                 f"got {length!r}")
        return length

    def _prepare(self, text: str) -> str:
        """Python-side cleanup applied before the backend (which may normalise further)."""
        if self.lowercase:
            text = text.lower()
        if self.clean == "canonicalize":  # SigLIP / big_vision: drop ASCII punctuation
            text = text.translate(_PUNCT)
        if self.clean != "none":
            text = _WS.sub(" ", text).strip()
        return text

    def _word_counts(self, texts: Iterable[str]) -> Counter[str]:
        """How often each pre-tokenized word (byte-level string) occurs, split exactly as :meth:`__call__` does:
        Python cleanup, special tokens cut out verbatim, then the backend's normalizer and pre-tokenizer.

        Words never span a space (CLIP's split drops whitespace, NFC never composes across it), so texts are cut
        at spaces first and each distinct chunk goes through the backend once.
        """
        chunks: Counter[str] = Counter()
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"texts must be str, got {type(text).__name__}")
            chunks.update(self._prepare(text).split(" "))
        backend = self.backend
        norm, pre = backend.normalizer, backend.pre_tokenizer
        specials = sorted((t.content for t in backend.get_added_tokens_decoder().values()), key=len, reverse=True)
        cut = re.compile("|".join(map(re.escape, specials))) if specials else None
        words: Counter[str] = Counter()
        for chunk, n in chunks.items():
            for piece in cut.split(chunk) if cut else [chunk]:
                if norm is not None:
                    piece = norm.normalize_str(piece)
                for word, _ in pre.pre_tokenize_str(piece) if pre is not None else [(piece, None)]:
                    if word:
                        words[word] += n
        return words

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        """Tokenize one text or a batch into a LongTensor of shape (N, context_length)."""
        length = self.context_length if context_length is None else self._check_length(context_length)
        if isinstance(texts, str):
            texts = [texts]
        elif not isinstance(texts, Sequence) or isinstance(texts, (bytes, bytearray)):
            raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
        encodings = self.backend.encode_batch([self._prepare(t) for t in texts], add_special_tokens=False)
        head = [] if self.bos_id is None else [self.bos_id]
        rows = []
        for enc in encodings:
            ids = head + enc.ids
            if len(ids) < length:
                ids = ids + [self.eos_id] + [self.pad_id] * (length - len(ids) - 1)
            elif self.keep_eos_on_truncate:
                ids = ids[: length - 1] + [self.eos_id]
            else:
                ids = ids[:length]
            rows.append(ids)
        return torch.tensor(rows, dtype=torch.long).view(len(rows), length)

    def collate(self, rows: Sequence[str]) -> torch.Tensor:
        """A text row is the string itself: ``collate(list_of_str)`` tokenizes the batch -> (N, L)."""
        return self(list(rows))

    def encode(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        """Same as calling the tokenizer."""
        return self(texts, context_length)

    def attention_mask(self, input_ids: torch.Tensor | Sequence[int] | Sequence[Sequence[int]]) -> torch.Tensor:
        """1 up to and including the first eos of each row, 0 after it (all ones if eos was truncated away).

        Positional, not ``ids != pad_id``: HF pads with the eos id and OpenAI pads with 0, a real token ('!').
        """
        ids = torch.as_tensor(input_ids, dtype=torch.long)
        squeeze = ids.dim() == 1
        ids = ids.unsqueeze(0) if squeeze else ids
        if ids.dim() != 2:
            raise ValueError(f"input_ids must be 1-D or 2-D, got shape {tuple(ids.shape)}")
        is_eos = ids == self.eos_id
        last = torch.where(is_eos.any(-1), is_eos.int().argmax(-1), torch.full_like(ids[:, 0], ids.shape[1] - 1))
        mask = (torch.arange(ids.shape[1], device=ids.device) <= last[:, None]).long()
        return mask[0] if squeeze else mask

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """Ids of one row -> text, without specials/padding. Lossy: CLIP-style BPE forgets spacing around
        punctuation and between digits, and lowercasing/cleanup are not undone."""
        seq = torch.as_tensor(ids, dtype=torch.long)
        if seq.dim() != 1:
            raise ValueError(f"decode takes one row of ids, got shape {tuple(seq.shape)}")
        row = seq.tolist()
        if self.bos_id is not None and row and row[0] == self.bos_id:
            row = row[1:]
        if self.eos_id in row:  # pads only ever follow eos; a row without eos is all text
            row = row[: row.index(self.eos_id)]
        text = self.backend.decode(row, skip_special_tokens=True)
        suffix = getattr(self.backend.model, "end_of_word_suffix", None)
        if suffix:
            text = _WS.sub(" ", text.replace(suffix, " "))
        return text.strip()

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        """Everything besides the backend needed to rebuild this tokenizer (HF-ish token names for readers)."""
        name = lambda i: None if i is None else self.backend.id_to_token(i)  # noqa: E731
        return {"format": CONFIG_FORMAT, "context_length": self.context_length, "model_max_length": self.context_length,
                "bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self.pad_id, "bos_token": name(self.bos_id),
                "eos_token": name(self.eos_id), "pad_token": name(self.pad_id), "padding": self.padding,
                "lowercase": self.lowercase, "clean": self.clean, "keep_eos_on_truncate": self.keep_eos_on_truncate}

    def save(self, directory: str | Path) -> None:
        """Write directory/tokenizer.json (the backend) and directory/tokenizer_config.json (our settings)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_file(d / "tokenizer.json") as tmp:
            self.backend.save(str(tmp))
        atomic_write_json(d / "tokenizer_config.json", self.config())

    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        """Read what :meth:`save` wrote."""
        d = Path(directory)
        files = [d / "tokenizer.json", d / "tokenizer_config.json"]
        missing = [p.name for p in files if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{d}: missing {', '.join(missing)}; expected tokenizer.json and "
                                    "tokenizer_config.json written by Tokenizer.save()")
        cfg = _read_json(files[1])
        if cfg.get("format") != CONFIG_FORMAT:
            raise TokenizerError(f"{files[1]} was not written by tether's Tokenizer.save(); "
                                 "use Tokenizer.from_hf_dir()")
        missing = [k for k in ("context_length", "bos_id", "eos_id", "pad_id", "padding", "lowercase", "clean")
                   if k not in cfg]
        if missing:
            raise TokenizerError(f"{files[1]}: missing key(s) {', '.join(missing)}")
        return cls(_backend_from_file(files[0]), cfg["context_length"], bos_id=cfg["bos_id"],
                   eos_id=cfg["eos_id"], pad_id=cfg["pad_id"], padding=cfg["padding"], lowercase=cfg["lowercase"],
                   clean=cfg["clean"], keep_eos_on_truncate=cfg.get("keep_eos_on_truncate", True))

    @classmethod
    def from_hf_dir(cls, directory: str | Path, context_length: int | None = None) -> Tokenizer:
        """Tokenizer of a Hugging Face checkpoint directory, matching transformers' ids with
        ``padding="max_length", truncation=True``.

        Files: tokenizer.json, or CLIP's vocab.json + merges.txt; tokenizer_config.json and
        special_tokens_map.json give special tokens, ``model_max_length`` and ``tokenizer_class``
        (CLIP vs SigLIP).  A directory written by :meth:`save` is loaded as such.
        """
        d = Path(directory)
        cfg = _read_json(d / "tokenizer_config.json")
        if cfg.get("format") == CONFIG_FORMAT:
            tok = cls.load(d)
            if context_length is not None:
                tok.context_length = tok._check_length(context_length)
            return tok
        cfg = {**_read_json(d / "special_tokens_map.json"), **cfg}
        kind = str(cfg.get("tokenizer_class") or "").removesuffix("Fast").lower()
        kind, backend = _hf_backend(d, kind)
        bos, eos, pad, padding, lowercase, clean, length = _hf_specials(d, cfg, kind, backend)
        length = context_length if context_length is not None else length
        if length is None:
            raise TokenizerError(f"{d}: no model_max_length in tokenizer_config.json; pass context_length")
        return cls(backend, length, bos_id=bos, eos_id=eos, pad_id=pad, padding=padding, lowercase=lowercase,
                   clean=clean)

    @classmethod
    def train_bpe(cls, texts: Iterable[str], vocab_size: int = 8192, context_length: int = 77,
                  min_frequency: int = 2, lowercase: bool = True) -> Tokenizer:
        """Train a CLIP-style byte-level BPE on a caption corpus, for towers trained from scratch.

        Vocab layout follows OpenAI's: '<pad>'=0, '<|startoftext|>'=1, '<|endoftext|>'=2, the 256 byte
        symbols, the 256 byte symbols + '</w>', then one token per merge; so no byte is ever unknown.
        ``vocab_size`` is the total size (at most; fewer if no pair reaches ``min_frequency``).  Training is a pure
        function of the corpus (see :func:`tether.bpe.learn_bpe`; ``tokenizers``' BpeTrainer is not
        reproducible) and splits words exactly as encoding does.
        """
        specials = [TRAIN_PAD, CLIP_BOS, CLIP_EOS]
        alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
        base = specials + alphabet + [c + EOW for c in alphabet]
        if vocab_size <= len(base):
            raise ConfigError(f"vocab_size must exceed {len(base)} (specials + 2 x 256 byte symbols), got {vocab_size}")
        plain = cls(clip_style_bpe({t: i for i, t in enumerate(base)}, [], lowercase=lowercase), context_length,
                    bos_id=1, eos_id=2, pad_id=0, padding="zeros", lowercase=lowercase)
        words = ((tuple(w[:-1]) + (w[-1] + EOW,), n) for w, n in plain._word_counts(texts).items())
        tokens, merges = learn_bpe(words, base, vocab_size, min_frequency)
        vocab = {t: i for i, t in enumerate(tokens)}
        backend = clip_style_bpe(vocab, merges, lowercase=lowercase)
        return cls(backend, context_length, bos_id=1, eos_id=2, pad_id=0, padding="zeros", lowercase=lowercase)


def _hf_backend(d: Path, kind: str) -> tuple[str, tokenizers.Tokenizer]:
    """The ``tokenizers`` backend of a Hugging Face directory and its (lower-case) tokenizer class:
    tokenizer.json, or CLIP's vocab.json + merges.txt, or SigLIP's spiece.model."""
    tok_json, vocab_json, merges_txt, spiece = (d / n for n in ("tokenizer.json", "vocab.json", "merges.txt",
                                                                "spiece.model"))
    if tok_json.is_file():
        backend_json = _read_json(tok_json)
        model = backend_json.get("model", {})
        if not kind and model.get("end_of_word_suffix") == EOW:
            kind = "cliptokenizer"  # a BPE with CLIP's '</w>' suffix and no config
        if kind == "cliptokenizer" and model.get("type") == "BPE":
            # Like transformers 5: keep vocab/merges, rebuild CLIP's pipeline (old tokenizer.json files differ).
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
            backend = clip_style_bpe(model["vocab"], merges)
        else:
            backend = _backend_from_file(tok_json)
    elif vocab_json.is_file() and merges_txt.is_file() and kind in ("", "cliptokenizer"):
        kind, backend = "cliptokenizer", clip_style_bpe(_read_json(vocab_json), _read_merges(merges_txt))
    elif spiece.is_file():
        kind, backend = kind or "sigliptokenizer", spm_unigram(spiece)
    else:
        found = sorted(p.name for p in d.iterdir()) if d.is_dir() else "directory does not exist"
        raise FileNotFoundError(f"{d}: no usable tokenizer files; expected tokenizer.json, or vocab.json + "
                                "merges.txt (CLIP), or spiece.model (SigLIP), plus optional "
                                f"tokenizer_config.json / special_tokens_map.json; found: {found}")
    return kind, backend


def _hf_specials(d: Path, cfg: dict[str, Any], kind: str, backend: tokenizers.Tokenizer) -> tuple:
    """-> (bos, eos, pad, padding, lowercase, clean, context length or None) as transformers would use
    them for ``kind`` (CLIP, SigLIP, or the checkpoint's own post-processor)."""

    def tid(key: str, default: str | None) -> int | None:
        token = _token_str(cfg.get(key)) or default
        if token is None:
            return None
        idx = backend.token_to_id(token)
        if idx is None:
            raise TokenizerError(f"{d}: {key} {token!r} is not in the vocabulary")
        return idx

    max_len = cfg.get("model_max_length")  # HF writes ~1e30 when unknown
    length = max_len if isinstance(max_len, int) and 0 < max_len <= 100_000 else None
    if kind == "cliptokenizer":  # transformers' CLIPTokenizer with padding="max_length"
        bos, eos, pad = tid("bos_token", CLIP_BOS), tid("eos_token", CLIP_EOS), tid("pad_token", CLIP_EOS)
        padding, lowercase, clean, length = "zeros", False, "whitespace", length or 77
    elif kind == "sigliptokenizer":  # transformers' SiglipTokenizer: canonicalize_text, no bos
        bos, eos, pad = None, tid("eos_token", "</s>"), tid("pad_token", "</s>")
        padding, clean, length = "max_length", "canonicalize", length or 64
        lowercase = bool(cfg.get("do_lower_case", True))
    else:  # best effort: follow the specials the checkpoint's own post-processor adds
        backend.no_padding()  # a tokenizer.json may pad (MiniLM pads to 128): the probe must see only specials
        backend.no_truncation()
        probe = backend.encode("", add_special_tokens=True).ids
        eos = tid("eos_token", None)
        eos = eos if eos is not None else tid("sep_token", None)  # BERT-style: [CLS] text [SEP]
        eos = eos if eos is not None else (probe[-1] if probe else None)
        if eos is None:
            raise TokenizerError(f"{d}: cannot tell the eos token; set eos_token in tokenizer_config.json")
        bos = probe[0] if probe and probe[0] != eos else None
        pad = tid("pad_token", None)
        pad = eos if pad is None else pad
        padding, lowercase, clean = "max_length", "siglip2" in kind, "whitespace"
    return bos, eos, pad, padding, lowercase, clean, length
