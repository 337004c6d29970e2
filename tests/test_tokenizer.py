"""Tests for tether.tokenizer: fixed-length CLIP/SigLIP ids, parity with transformers, persistence, errors.

Everything is built offline: toy CLIP vocab/merges learned from captions, toy Unigram/SentencePiece models.
transformers is used only as the reference implementation.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import json
import os
import random
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as Backend

from tether.bpe import learn_bpe
from tether.tokenizer import Tokenizer, clip_style_bpe, spm_unigram

WORDS = ("a an the photo picture of cat dog man woman child red blue green small big two three on in near with "
         "sitting running playing park beach street car house tree ball water sunset mountain").split()


def make_captions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


CAPTIONS = make_captions(300) + [
    "A photo of a cat sitting on the mat.", "Two dogs running in the park!", "Café au lait, naïve résumé",
    "the year 2024 was great", "don't stop, it's fine; we'll see", "WOW!? what a VIEW...",
]
# Punctuation, case, odd whitespace, digits, non-ASCII (accents, CJK, emoji), special-token text, empties.
HARD = [
    "A photo of a CAT.", "  two   dogs\n\trunning!!  ", "Café 2024 naïve — 東京 😀", "", " ", "x",
    "don't!? it's FINE;we'll", "the 3 red balls (big) & 1/2 blue", "tree " * 40, "<|endoftext|> hi",
    "Ünïcödé ŞTRÄßE", "a\u00a0non-breaking\u2003space", "e\u0301 vs \u00e9",
]
SYLLABLES = [c + v for c in ["", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "ch",
                              "sh", "st"] for v in ["a", "e", "i", "o", "u", "ai", "ou", "er", "ing", "y"]]


def zipf_captions(n: int, seed: int = 0, n_words: int = 3000) -> list[str]:
    """Captions over a Zipf-distributed vocabulary of pseudo-words: many ties in pair counts, a long tail."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(2 * n_words)]
    words = list(dict.fromkeys(words))[:n_words]
    cum = list(itertools.accumulate(1 / (i + 1) for i in range(len(words))))
    return [" ".join(rng.choices(words, cum_weights=cum, k=rng.randint(4, 14))) for _ in range(n)]


PLAIN = ["a photo of a cat", "two dogs running in the park", "a zebra and a quokka near the lighthouse", "x"]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CLIP's slow files in OpenAI's layout: 256 bytes, 256 bytes + '</w>', merges, then bos/eos."""
    trainer_tok = clip_style_bpe({}, [])
    trainer = trainers.BpeTrainer(vocab_size=900, min_frequency=2, end_of_word_suffix="</w>", show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    trainer_tok.train_from_iterator(CAPTIONS, trainer)
    merges = [tuple(m) for m in json.loads(trainer_tok.to_str())["model"]["merges"]]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    d = tmp_path_factory.mktemp("clip_slow")
    (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(dict.fromkeys(tokens))}), encoding="utf-8")
    (d / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def hf_clip(clip_dir: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.CLIPTokenizer(str(clip_dir / "vocab.json"), str(clip_dir / "merges.txt"))


def hf_ids(hf, texts: list[str], length: int) -> list[list[int]]:
    return hf(texts, padding="max_length", truncation=True, max_length=length)["input_ids"]


def canonicalize(text: str) -> str:
    """transformers' SiglipTokenizer.canonicalize_text (do_lower_case=True), copied: its module needs sentencepiece."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SigLIP-like checkpoint: Unigram tokenizer.json with a T5-style '$A </s>' template + SiglipTokenizer config."""
    tok = Backend(models.Unigram())
    tok.normalizer = normalizers.Replace(Regex(" {2,}"), " ")
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(CAPTIONS, trainers.UnigramTrainer(vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"],
                                                              unk_token="<unk>", show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    d = tmp_path_factory.mktemp("siglip")
    tok.save(str(d / "tokenizer.json"))
    cfg = {"tokenizer_class": "SiglipTokenizer", "model_max_length": 64, "eos_token": "</s>", "pad_token": "</s>",
           "unk_token": "<unk>", "do_lower_case": True}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return d


# --------------------------------------------------------------------------- CLIP parity with transformers
@pytest.mark.parametrize("length", [5, 16, 77])
def test_clip_slow_files_match_transformers(clip_dir: Path, hf_clip, length: int) -> None:
    ours = Tokenizer.from_hf_dir(clip_dir, context_length=length)
    assert ours(HARD).tolist() == hf_ids(hf_clip, HARD, length)
    assert ours(CAPTIONS[:50]).tolist() == hf_ids(hf_clip, CAPTIONS[:50], length)


def test_clip_attention_mask_matches_transformers(clip_dir: Path, hf_clip) -> None:
    texts = [t for t in HARD if "<|endoftext|>" not in t]  # a literal eos mid-text is the documented exception
    ours = Tokenizer.from_hf_dir(clip_dir, context_length=16)
    want = hf_clip(texts, padding="max_length", truncation=True, max_length=16)["attention_mask"]
    assert ours.attention_mask(ours(texts)).tolist() == want


def test_clip_slow_dir_defaults(clip_dir: Path, hf_clip) -> None:
    tok = Tokenizer.from_hf_dir(clip_dir)
    assert tok.context_length == 77 and tok.padding == "zeros"
    assert tok.bos_id == hf_clip.bos_token_id and tok.eos_id == hf_clip.eos_token_id
    assert tok.pad_id == hf_clip.pad_token_id == tok.eos_id  # HF CLIP pads with <|endoftext|>
    assert tok.vocab_size == len(hf_clip)


def test_clip_save_pretrained_dir_matches(clip_dir: Path, hf_clip, tmp_path: Path) -> None:
    hf_clip.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    for name in ("vocab.json", "merges.txt"):  # make sure tokenizer.json is what gets read
        (tmp_path / name).unlink(missing_ok=True)
    ours = Tokenizer.from_hf_dir(tmp_path)
    assert ours.context_length == 77  # HF's "unknown" model_max_length (1e30) falls back to CLIP's 77
    assert ours(HARD).tolist() == hf_ids(hf_clip, HARD, 77)
    assert ours(HARD, context_length=7).tolist() == hf_ids(hf_clip, HARD, 7)


def test_clip_stale_tokenizer_json_pipeline_is_rebuilt(clip_dir: Path, hf_clip, tmp_path: Path) -> None:
    """Like transformers 5, only vocab/merges of a CLIPTokenizer's tokenizer.json are trusted."""
    hf_clip.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    data["normalizer"] = None  # an old/odd file: no lowercasing
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**cfg, "model_max_length": 12}), encoding="utf-8")
    ours = Tokenizer.from_hf_dir(tmp_path)
    assert ours.context_length == 12
    assert ours(HARD).tolist() == hf_ids(hf_clip, HARD, 12)


def test_clip_fast_tokenizer_json_without_config(clip_dir: Path, hf_clip, tmp_path: Path) -> None:
    hf_clip.save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").unlink()
    ours = Tokenizer.from_hf_dir(tmp_path, context_length=16)  # detected as CLIP from the '</w>' suffix
    assert ours(HARD).tolist() == hf_ids(hf_clip, HARD, 16)


# --------------------------------------------------------------------------- layout rules
@pytest.fixture(scope="module")
def openai_tok(clip_dir: Path) -> Tokenizer:
    """OpenAI CLIP layout: pad id 0, which is also the real token '!'."""
    vocab = json.loads((clip_dir / "vocab.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split(" ")) for line in (clip_dir / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]]
    backend = clip_style_bpe(vocab, merges)
    return Tokenizer(backend, 16, bos_id=vocab["<|startoftext|>"], eos_id=vocab["<|endoftext|>"], pad_id=0)


def test_every_row_has_context_length(openai_tok: Tokenizer) -> None:
    out = openai_tok(HARD)
    assert out.dtype == torch.long and out.shape == (len(HARD), 16)
    assert openai_tok("one text").shape == (1, 16)
    assert openai_tok(HARD, context_length=3).shape == (len(HARD), 3)
    assert openai_tok([]).shape == (0, 16)
    assert torch.equal(openai_tok.encode(HARD), openai_tok(HARD))


def test_clip_layout_and_zero_padding(openai_tok: Tokenizer) -> None:
    body = openai_tok.backend.encode("a photo of a cat", add_special_tokens=False).ids
    row = openai_tok("a photo of a cat")[0].tolist()
    n = len(body)
    assert row == [openai_tok.bos_id, *body, openai_tok.eos_id] + [0] * (16 - n - 2)
    assert openai_tok("")[0].tolist() == [openai_tok.bos_id, openai_tok.eos_id] + [0] * 14


def test_long_text_truncated_keeping_eos(openai_tok: Tokenizer) -> None:
    text = " ".join(make_captions(300, seed=1))  # thousands of tokens: must not raise
    full = openai_tok.backend.encode(text, add_special_tokens=False).ids
    for length in (2, 3, 16, 77):
        row = openai_tok(text, context_length=length)[0].tolist()
        assert row == [openai_tok.bos_id, *full[: length - 2], openai_tok.eos_id]
        assert openai_tok.attention_mask(torch.tensor(row)).tolist() == [1] * length


def test_truncation_without_eos_is_configurable(openai_tok: Tokenizer) -> None:
    tok = Tokenizer(openai_tok.backend, 8, bos_id=openai_tok.bos_id, eos_id=openai_tok.eos_id, pad_id=0,
                    keep_eos_on_truncate=False)
    text = "tree " * 30
    full = tok.backend.encode(text, add_special_tokens=False).ids
    row = tok(text)[0]
    assert row.tolist() == [tok.bos_id, *full[:7]] and tok.eos_id not in row.tolist()
    assert tok.attention_mask(row).tolist() == [1] * 8
    assert tok("a cat")[0].tolist() == openai_tok("a cat", context_length=8)[0].tolist()  # short text unchanged


def test_attention_mask_is_positional_not_pad_id(openai_tok: Tokenizer) -> None:
    ids = openai_tok(["wow!? great", "a cat"])
    assert openai_tok.backend.id_to_token(0) == "!"
    first = ids[0].tolist()
    assert 0 in first[1: first.index(openai_tok.eos_id)]  # '!' (id 0) is a real token here
    mask = openai_tok.attention_mask(ids)
    for row, m in zip(ids.tolist(), mask.tolist()):
        n = row.index(openai_tok.eos_id) + 1
        assert m == [1] * n + [0] * (16 - n)
    assert openai_tok.attention_mask(ids[1]).tolist() == mask[1].tolist()  # 1-D in, 1-D out


def test_context_length_too_small_is_rejected(openai_tok: Tokenizer) -> None:
    with pytest.raises(ValueError, match="context_length"):
        openai_tok("a cat", context_length=1)
    with pytest.raises(ValueError, match="padding"):
        Tokenizer(openai_tok.backend, 8, bos_id=None, eos_id=1, pad_id=0, padding="left")


# --------------------------------------------------------------------------- SigLIP
def test_siglip_tokenizer_json(siglip_dir: Path) -> None:
    tok = Tokenizer.from_hf_dir(siglip_dir)
    backend = Backend.from_file(str(siglip_dir / "tokenizer.json"))
    eos = backend.token_to_id("</s>")
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.padding, tok.context_length) == (None, eos, eos, "max_length", 64)
    out = tok(HARD)
    assert out.shape == (len(HARD), 64)
    for text, row in zip(HARD, out.tolist()):
        body = backend.encode(canonicalize(text), add_special_tokens=False).ids[:63]
        assert row == body + [eos] * (64 - len(body)), text  # no bos; tokens, eos, then pad (= eos) to the end
    long_row = tok("Sitting " * 100)[0].tolist()
    assert long_row[-1] == eos and eos not in long_row[:-1]
    assert tok.attention_mask(out)[3].tolist() == [1] + [0] * 63  # "" -> just eos


def test_siglip_matches_transformers_fast_backend(siglip_dir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(siglip_dir / "tokenizer.json"), eos_token="</s>",
                                              pad_token="</s>", unk_token="<unk>")
    tok = Tokenizer.from_hf_dir(siglip_dir, context_length=10)
    texts = HARD + CAPTIONS[:40]
    want = hf([canonicalize(t) for t in texts], padding="max_length", truncation=True, max_length=10)
    assert tok(texts).tolist() == want["input_ids"]  # HF also keeps eos when truncating
    assert tok.attention_mask(tok(texts)).tolist() == want["attention_mask"]


# A 30-piece Unigram spiece.model (pad=0, eos=1, unk=2, identity normalization) made by sentencepiece 0.2.3.
TINY_SPM = base64.b64decode(
    "Cg4KBTxwYWQ+FQAAAAAYAwoNCgQ8L3M+FQAAAAAYAwoOCgU8dW5rPhUAAAAAGAIKDQoG4paBcmVkFb61GcAKDQoG4paBY2F0Fcmq"
    "H8AKDQoG4paBZG9nFf7PIMAKDAoF4paBb24Vv8AjwAoNCgbiloF0d28VmmAkwAoOCgfiloFwYXJrFV6yJMAKEAoJ4paBcGVvcGxl"
    "FYG1JMAKDAoF4paBaW4VVvkkwAoNCgbiloF0aGUVoTwmwAoICgFtFecYLcAKCAoBZhWKGi3ACggKAWkVLhwtwAoICgFsFdEdLcAK"
    "CAoBaxV0Hy3ACggKAXcVGCEtwAoICgFnFbsiLcAKCAoBYxVfJC3ACggKAWgVAiYtwAoICgFuFaYnLcAKCAoBchVJKS3ACggKAWQV"
    "7CotwAoICgFhFZAsLcAKCAoBcBUzLi3ACggKAWUV1y8twAoICgF0FXoxLcAKCAoBbxUeMy3ACgoKA+KWgRXBNC3AEhkYASAewAIC"
    "yAL///////////8B0AIB2AIAGgwKCGlkZW50aXR5EgA="
)
# Expected ids computed with sentencepiece.SentencePieceProcessor(model_proto=TINY_SPM).encode(text).
TINY_SPM_IDS = {
    "a photo of the cat": [29, 24, 29, 25, 20, 28, 27, 28, 29, 28, 13, 11, 4],
    "two  red dogs in a park ": [7, 3, 5, 2, 10, 29, 24, 8],
    "zebra": [29, 2, 26, 2, 22, 24],
    "xyzzy qq": [29, 2, 29, 2],
    "  lead trail  ": [29, 15, 26, 24, 23, 29, 27, 22, 24, 14, 15],
    "the cat on the mat": [11, 4, 6, 11, 29, 12, 24, 27],
}


def test_spiece_model_without_sentencepiece(tmp_path: Path) -> None:
    (tmp_path / "spiece.model").write_bytes(TINY_SPM)
    backend = spm_unigram(tmp_path / "spiece.model")
    for text, ids in TINY_SPM_IDS.items():
        assert backend.encode(text).ids == ids, text
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "SiglipTokenizer"}))
    tok = Tokenizer.from_hf_dir(tmp_path)
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.context_length) == (None, 1, 1, 64)
    row = tok("The cat, on the MAT!", context_length=12)[0].tolist()
    assert row == TINY_SPM_IDS["the cat on the mat"] + [1] * 4
    assert tok.decode(row) == "the cat on the mat"


def test_spiece_matches_transformers_siglip(tmp_path: Path) -> None:
    spm = pytest.importorskip("sentencepiece")
    pytest.importorskip("google.protobuf")
    transformers = pytest.importorskip("transformers")
    lines = make_captions(2000, seed=3)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(tmp_path / "spiece"),
                                   vocab_size=50, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   normalization_rule_name="nmt_nfkc", minloglevel=2)
    hf = transformers.SiglipTokenizer(str(tmp_path / "spiece.model"))
    hf.save_pretrained(tmp_path / "hf")
    ours = Tokenizer.from_hf_dir(tmp_path / "hf", context_length=16)
    texts = [t for t in HARD if "<|" not in t] + ["ＦＵＬＬ ｗｉｄｔｈ ﬁ", "tree_house"] + lines[:20]
    assert ours(texts).tolist() == hf_ids(hf, texts, 16)


# --------------------------------------------------------------------------- training, persistence
@pytest.fixture(scope="module")
def trained() -> Tokenizer:
    return Tokenizer.train_bpe(CAPTIONS, vocab_size=700, context_length=24)


def test_train_bpe(trained: Tokenizer) -> None:
    assert (trained.pad_id, trained.bos_id, trained.eos_id, trained.padding) == (0, 1, 2, "zeros")
    assert [trained.backend.id_to_token(i) for i in range(3)] == ["<pad>", "<|startoftext|>", "<|endoftext|>"]
    assert 515 < trained.vocab_size <= 700
    ids = trained(PLAIN)
    assert ids.shape == (len(PLAIN), 24)
    for text, row in zip(PLAIN, ids.tolist()):
        n = row.index(2)
        assert row[0] == 1 and all(i > 2 for i in row[1:n]) and row[n + 1:] == [0] * (23 - n)
    # merges were learned: frequent words are single tokens, so captions are shorter than their characters
    assert (ids[0] != 0).sum() <= 1 + len(PLAIN[0].split()) + 1
    for text, row in zip(PLAIN, trained(PLAIN, context_length=77)):
        assert trained.decode(row) == text  # unseen words survive via the byte alphabet
    assert trained.decode(trained("A Photo OF a Cat")[0]) == "a photo of a cat"


def test_train_bpe_case_preserving() -> None:
    tok = Tokenizer.train_bpe(CAPTIONS[:100], vocab_size=600, lowercase=False)
    assert tok.decode(tok("A Photo of Two Dogs")[0]) == "A Photo of Two Dogs"
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train_bpe(CAPTIONS[:10], vocab_size=300)


def merges_of(tok: Tokenizer) -> list[list[str]]:
    return json.loads(tok.backend.to_str())["model"]["merges"]


def test_train_bpe_common_words_are_single_tokens(trained: Tokenizer) -> None:
    for word in WORDS:
        assert trained.backend.encode(word, add_special_tokens=False).tokens == [word + "</w>"], word
    for word in ("zebra", "quokka"):  # unseen: spelled with smaller pieces
        assert len(trained.backend.encode(word, add_special_tokens=False).ids) > 1


def test_train_bpe_is_deterministic_in_process() -> None:
    corpus = zipf_captions(1000, seed=1)
    a = Tokenizer.train_bpe(corpus, vocab_size=900, context_length=40)
    b = Tokenizer.train_bpe(iter(list(corpus)), vocab_size=900, context_length=40)  # any iterable
    c = Tokenizer.train_bpe(corpus[::-1], vocab_size=900, context_length=40)  # depends on the multiset only
    assert a.vocab_size == 900 and merges_of(a)
    for other in (b, c):
        assert a.backend.to_str() == other.backend.to_str()
        assert merges_of(a) == merges_of(other) and a.backend.get_vocab() == other.backend.get_vocab()
        assert torch.equal(a(corpus + HARD), other(corpus + HARD))


TRAIN_SCRIPT = """
import hashlib, json, sys
from tether.tokenizer import Tokenizer
texts = json.loads(open(sys.argv[1], encoding="utf-8").read())
tok = Tokenizer.train_bpe(texts, vocab_size=2048, context_length=32)
digest = lambda b: hashlib.sha256(b).hexdigest()
print(digest(tok.backend.to_str().encode()), digest(tok(texts).numpy().tobytes()))
"""


@pytest.mark.slow
def test_train_bpe_is_deterministic_across_processes(tmp_path: Path) -> None:
    """tokenizers' BpeTrainer learns different merges in different processes on this corpus; we must not."""
    corpus = zipf_captions(1000, seed=2)
    (tmp_path / "corpus.json").write_text(json.dumps(corpus), encoding="utf-8")
    digests = set()
    for seed in ("0", "4242"):  # different str hashing too
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(tmp_path / "corpus.json")], env=env,
                             capture_output=True, text=True, check=True, timeout=300)
        digests.add(out.stdout.split()[-2] + " " + out.stdout.split()[-1])
    tok = Tokenizer.train_bpe(corpus, vocab_size=2048, context_length=32)
    digests.add(hashlib.sha256(tok.backend.to_str().encode()).hexdigest() + " "
                + hashlib.sha256(tok(corpus).numpy().tobytes()).hexdigest())
    assert len(digests) == 1


def test_train_bpe_larger_corpus_round_trips() -> None:
    """A few thousand captions with a long-tailed vocabulary (scaled-down stand-in for a 200k-caption corpus)."""
    corpus = zipf_captions(5000, seed=3)
    tok = Tokenizer.train_bpe(corpus, vocab_size=2048, context_length=64)
    assert tok.vocab_size == 2048
    ids = tok(corpus)
    assert (ids == tok.eos_id).any(-1).all()  # nothing truncated
    assert all(tok.decode(row) == text for text, row in zip(corpus, ids))
    counts = collections.Counter(w for text in corpus for w in text.split())
    for word, _ in counts.most_common(100):
        assert len(tok.backend.encode(word, add_special_tokens=False).ids) == 1, word
    cased = [t.capitalize() for t in corpus[:500]]
    tok = Tokenizer.train_bpe(cased, vocab_size=1024, lowercase=False, context_length=64)
    assert all(tok.decode(row) == text for text, row in zip(cased, tok(cased)))


def test_train_bpe_min_frequency_stops_early() -> None:
    assert Tokenizer.train_bpe(["ab cd"] * 3, vocab_size=600, min_frequency=4).vocab_size == 515  # no merge
    tok = Tokenizer.train_bpe(["ab cd"], vocab_size=600, min_frequency=1)
    assert tok.vocab_size == 517 and merges_of(tok) == [["a", "b</w>"], ["c", "d</w>"]]  # tie: smaller strings first
    tok = Tokenizer.train_bpe(["ab ab cd"], vocab_size=600, min_frequency=2)
    assert merges_of(tok) == [["a", "b</w>"]]
    assert Tokenizer.train_bpe(["ab cd"], vocab_size=516, min_frequency=1).vocab_size == 516  # total size cap


def test_train_bpe_special_token_text_is_not_learned() -> None:
    tok = Tokenizer.train_bpe(["<|endoftext|> hello"] * 5, vocab_size=600)
    assert "<|endoftext|>" not in "".join("".join(m) for m in merges_of(tok))
    assert tok.backend.encode("hello", add_special_tokens=False).tokens == ["hello</w>"]


def test_learn_bpe() -> None:
    words = [(("c", "d"), 1), (("a", "b"), 1), (("a", "b", "a", "b"), 1)]
    tokens, merges = learn_bpe(words, ["a", "b", "c", "d"], vocab_size=10, min_frequency=1)
    assert merges == [("a", "b"), ("ab", "ab"), ("c", "d")] and tokens == ["a", "b", "c", "d", "ab", "abab", "cd"]
    assert learn_bpe(words[::-1], ["a", "b", "c", "d"], 10, 1) == (tokens, merges)
    assert learn_bpe(words, ["a", "b", "c", "d"], 6, 1) == (tokens[:6], merges[:2])
    # 'a'+'aa' and 'aa'+'a' make the same token: the merge is kept, the vocabulary does not grow
    tokens, merges = learn_bpe([(("a", "aa"), 3), (("aa", "a"), 2)], ["a", "aa"], 10, 1)
    assert merges == [("a", "aa"), ("aa", "a")] and tokens == ["a", "aa", "aaa"]
    # overlapping occurrences merge left to right, and counts stay exact
    tokens, merges = learn_bpe([(("x", "x", "x"), 5)], ["x"], 10, 1)
    assert merges == [("x", "x"), ("xx", "x")]
    with pytest.raises(ValueError, match="initial vocabulary"):
        learn_bpe([(("a", "z"), 1)], ["a"], 10, 1)


def test_save_load_round_trip(trained: Tokenizer, tmp_path: Path) -> None:
    trained.save(tmp_path / "tok")
    cfg = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg["context_length"] == 24 and cfg["pad_id"] == 0 and cfg["padding"] == "zeros" and cfg["lowercase"]
    for loaded in (Tokenizer.load(tmp_path / "tok"), Tokenizer.from_hf_dir(tmp_path / "tok")):
        assert (loaded.context_length, loaded.bos_id, loaded.eos_id, loaded.pad_id) == (24, 1, 2, 0)
        assert torch.equal(loaded(HARD + CAPTIONS), trained(HARD + CAPTIONS))
    assert Tokenizer.from_hf_dir(tmp_path / "tok", context_length=9)("a cat").shape == (1, 9)


def test_save_load_siglip_round_trip(siglip_dir: Path, tmp_path: Path) -> None:
    tok = Tokenizer.from_hf_dir(siglip_dir)
    tok.save(tmp_path)
    loaded = Tokenizer.load(tmp_path)
    assert (loaded.padding, loaded.clean, loaded.bos_id) == ("max_length", "canonicalize", None)
    assert torch.equal(loaded(HARD), tok(HARD))


# --------------------------------------------------------------------------- bad input
def test_non_string_in_batch_names_index(openai_tok: Tokenizer) -> None:
    with pytest.raises(TypeError, match=r"texts\[2\].*int"):
        openai_tok(["a cat", "a dog", 3])
    with pytest.raises(TypeError, match=r"texts\[0\].*NoneType"):
        openai_tok([None])
    with pytest.raises(TypeError):
        openai_tok(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        openai_tok(b"bytes")  # type: ignore[arg-type]


def test_missing_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError) as err:
        Tokenizer.from_hf_dir(tmp_path)
    for expected in ("tokenizer.json", "vocab.json", "merges.txt", "spiece.model", "config.json"):
        assert expected in str(err.value)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Tokenizer.from_hf_dir(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="tokenizer_config.json"):
        Tokenizer.load(tmp_path)
    (tmp_path / "vocab.json").write_text("{}")  # half of CLIP's pair is not enough
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        Tokenizer.from_hf_dir(tmp_path)
