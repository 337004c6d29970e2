"""Spoken digits: Tux Paint's real recordings (evaluation) and espeak-ng's synthesis (training)."""
from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tether
from tether.audio import load_audio, trim_silence
from tether.cli.main import main
from tether.curate import read_embeddings, read_metadata
from tether.data.spec import build_source
from tether.data.spoken_digits import (DIGIT_READINGS, espeak_digits, split_by_language, spoken_digit_source,
                                       tuxpaint_spoken_digits)
from tether.embedding import embed
from tether.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tux_paint_has_the_ten_digits_spoken_in_twenty_languages(tuxpaint_stamps):
    items = tuxpaint_spoken_digits(tuxpaint_stamps)
    by_language = collections.defaultdict(set)
    for d in items:
        by_language[d.language].add(d.label)
        assert d.path.name.startswith(f"{d.label}") and d.path.suffix == ".ogg"
    assert len(by_language) >= 20
    full = [lang for lang, digits in by_language.items() if digits == set(range(10))]
    assert {"en", "en_GB", "de", "fr", "ja", "zh_tw"} <= set(full) and len(full) >= 15
    desc = [d for d in items if d.speaker == "tuxpaint-desc"]
    assert {d.language for d in desc} == {"fr", "ro", "ru"} and len(desc) == 30
    only_de = tuxpaint_spoken_digits(tuxpaint_stamps, languages=["de"])
    assert [d.label for d in only_de] == list(range(10)) and {d.language for d in only_de} == {"de"}
    with pytest.raises(DataError, match="no Tux Paint digits"):
        tuxpaint_spoken_digits(tuxpaint_stamps / "nowhere")


def test_espeak_synthesises_each_languages_own_words_once(tmp_path):
    out = tmp_path / "espeak"
    items = espeak_digits(out, languages=["de", "ja"], variants=["f3"], speeds=[150], pitches=[50], readings={})
    assert len(items) == 20 and {d.language for d in items} == {"de", "ja"}
    durations = {}
    for d in items:
        wave, rate = load_audio(d.path)
        assert rate == 22050 and wave.shape[0] == 1 and float(wave.abs().max()) > 0.05
        durations[(d.language, d.label)] = wave.shape[1] / rate
        assert 0.2 < durations[(d.language, d.label)] < 2.0
    de7, ja7 = (load_audio(out / lang / "7_f3_s150_p50.wav")[0] for lang in ("de", "ja"))
    assert de7.shape != ja7.shape or not torch.allclose(de7, ja7)  # "sieben" is not "nana"
    rows = (out / "manifest.csv").read_text().splitlines()
    assert rows[0] == "audio,label,language,speaker" and rows[1] == "de/0_f3_s150_p50.wav,0,de,de+f3 s150 p50"
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    again = espeak_digits(out, languages=["de", "ja"], variants=["f3"], speeds=[150], pitches=[50], readings={})
    assert again == items and {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == stamps  # kept, not redone
    with pytest.raises(DataError, match=r"espeak-ng -v zz-nope\+f3 could not speak '0' .*voice does not exist"):
        espeak_digits(tmp_path / "bad", languages=["zz-nope"], variants=["f3"], speeds=[150], pitches=[50])
    assert not list((tmp_path / "bad").rglob("*.wav"))  # nothing half-written


def test_espeak_also_speaks_each_digits_other_readings(tmp_path):
    """Korean counts natively (hana, dul, ...) beside the Sino-Korean numerals espeak-ng reads; Japanese
    says nana as well as shichi: each reading is its own file, labelled with its digit, named by its word."""
    items = espeak_digits(tmp_path, languages=["ko", "ja"], variants=["f3"], speeds=[150], pitches=[50])
    per = collections.Counter((d.language, d.label) for d in items)
    assert all(per[("ko", digit)] == 2 for digit in range(10))  # numeral + native word
    assert per[("ja", 7)] == 2 and per[("ja", 4)] == 2 and per[("ja", 1)] == 1
    assert len(items) == sum(1 + len(DIGIT_READINGS[lang].get(d, ())) for lang in ("ko", "ja") for d in range(10))
    ko7 = sorted(d.path for d in items if d.language == "ko" and d.label == 7)
    assert ko7[0].name == "7_f3_s150_p50.wav" and ko7[1].name.startswith("7w") and ko7[1].is_file()
    chil, ilgop = (trim_silence(*load_audio(p)) for p in ko7)
    assert ilgop.shape != chil.shape or not torch.allclose(ilgop, chil)  # il-gop is not chil
    changed = espeak_digits(tmp_path, languages=["ko"], variants=["f3"], speeds=[150], pitches=[50],
                            readings={"ko": {7: ("칠",)}})
    new7 = [d.path for d in changed if d.label == 7 and d.path.name.startswith("7w")]
    assert len(changed) == 11 and len(new7) == 1 and new7[0] != ko7[1]  # another word, another file


def test_held_out_languages_stay_apart(tuxpaint_stamps):
    items = tuxpaint_spoken_digits(tuxpaint_stamps)
    train, held = split_by_language(items, ["ja", "sv"])
    assert {d.language for d in held} == {"ja", "sv"} and not {d.language for d in train} & {"ja", "sv"}
    assert len(train) + len(held) == len(items)


def test_spoken_digit_sources_embed_through_the_engine_and_tether_embed(tuxpaint_stamps, tmp_path):
    source = build_source({"type": "tuxpaint_digits", "path": str(tuxpaint_stamps), "languages": ["de", "sv"]})
    sample = source.sample(0)
    assert sample.caption == "the number 0." and sample.label == 0 and sample.extra["language"] == "de"
    torch.manual_seed(0)
    model = tether.create_model("tiny-audio-28").eval()
    result = embed(model, "audio", source)
    assert result.vectors.shape == (20, 64) and result.skips.skipped == 0
    ckpt = tether.save(model, tmp_path / "m")
    out = tmp_path / "emb"
    assert main(["embed", "--model", str(ckpt), "--data", f"tuxpaint_digits:{tuxpaint_stamps}", "--modalities",
                 "audio", "--out", str(out), "--quiet"]) == 0
    meta = read_metadata(out)
    assert len(meta) == len(tuxpaint_spoken_digits(tuxpaint_stamps))
    assert {"key", "label", "language", "speaker", "audio"} <= set(meta.column_names)
    german = [i for i, lang in enumerate(meta.column("language").to_pylist()) if lang == "de"]
    np.testing.assert_allclose(read_embeddings(out, "audio")[german], result.vectors[:10].numpy(), atol=1e-3, rtol=0)
    assert json.loads((out / "summary.json").read_text())["counts"]["skipped"] == 0


def test_source_keys_name_language_and_file(tmp_path):
    items = espeak_digits(tmp_path, languages=["sv"], variants=["m1"], speeds=[175], pitches=[35])
    source = spoken_digit_source(items, templates=("{} spoken aloud",))
    assert source.sample(3).key == "sv/3_m1_s175_p35.wav" and source.sample(3).caption == "3 spoken aloud"
    assert source.class_names == [str(i) for i in range(10)]


def test_tux_paint_spoken_descriptions_pair_real_speech_with_stamp_images(tuxpaint_stamps):
    from tether.data.tuxpaint_speech import TuxPaintSpeechSource

    source = build_source({"type": "tuxpaint_speech", "path": str(tuxpaint_stamps)})
    stamps = source.stamps  # the TuxPaintSource it pairs with
    assert len(source) > 5000 and len(source.language_counts) >= 10  # every stamp tether reads, ~8 voices each
    assert {"fr", "ru", "ro", "bg", "ca", "es", "el", "be", "da"} <= set(source.language_counts)
    sample = next(source.sample(i) for i in range(len(source)) if source.sample(i).extra["language"] == "fr")
    stamp_key, _, language = sample.key.rpartition("/")
    stamp = next(s for s in stamps.stamps if s.key == stamp_key)
    assert sample.image == stamp.path and sample.caption == stamp.caption and language == "fr"
    assert Path(sample.extra["audio"]).name == f"{stamp.path.stem}_desc_fr.ogg"
    assert sample.extra["spoken_caption"] == stamp.translations.get("fr")
    train = TuxPaintSpeechSource(tuxpaint_stamps, "train", exclude_languages=["fr"])
    held = TuxPaintSpeechSource(tuxpaint_stamps, "validation", languages=["fr"])
    train_stamps = {train.sample(i).key.rpartition("/")[0] for i in range(len(train))}
    held_stamps = {held.sample(i).key.rpartition("/")[0] for i in range(len(held))}
    assert not train_stamps & held_stamps and "fr" not in train.language_counts
    assert set(held.language_counts) == {"fr"} and len(held) > 50


def test_tether_eval_scores_spoken_digits_per_language_through_the_text_classifier(tuxpaint_stamps, tmp_path):
    from tether.metrics.templates import get_templates
    from tether.metrics.zeroshot import ZeroShotClassifier
    from tether.tokenizer import Tokenizer

    torch.manual_seed(0)
    model = tether.create_model("tiny-audio-28").eval()
    prompts = [t.format(d) for t in get_templates("digits") for d in range(10)]
    model.tokenizer = Tokenizer.train_bpe(prompts * 3 + ["the number 7."] * 3, vocab_size=600, context_length=24)
    ckpt = tether.save(model, tmp_path / "m")
    assert main(["eval", "--model", str(ckpt), "--dataset", "tuxpaint_digits", "--task", "zeroshot",
                 "--out", str(tmp_path / "out")]) == 0
    record = json.loads(next((tmp_path / "out").glob("tuxpaint_digits__*zeroshot.json")).read_text())
    metrics = record["metrics"]
    # the same numbers by hand: embed the recordings, build the prompt classifier, compare
    source = build_source({"type": "tuxpaint_digits"})
    result = embed(model, "audio", source)
    labels = torch.tensor([s.label for s in result.samples])
    languages = [s.extra["language"] for s in result.samples]
    predicted = ZeroShotClassifier.build(model, source.class_names, "digits").predict(result.vectors)
    assert metrics["acc1"] == pytest.approx(float((predicted == labels).float().mean()), abs=1e-6)
    per_language = metrics["per_language"]
    assert set(per_language) == set(languages) and sum(v["n"] for v in per_language.values()) == len(labels) == 240
    de = torch.tensor([lang == "de" for lang in languages])
    assert per_language["de"]["acc1"] == pytest.approx(float((predicted[de] == labels[de]).float().mean()))


def test_festival_and_flite_speak_the_digits_in_voices_of_real_speakers(tmp_path):
    from tether.data.festival_digits import FESTIVAL_VOICES, festival_digits, installed_festival_voices
    from tether.data.spoken_digits import read_spoken_digit_manifest

    assert installed_festival_voices() == list(FESTIVAL_VOICES)  # README's install script installs every one
    out = tmp_path / "festival"
    voices = [("flite", "slt", "en"), ("festival", "pc_diphone", "it")]
    items = festival_digits(out, voices)
    assert len(items) == 20 and [d.label for d in items[:10]] == list(range(10))
    assert {d.speaker for d in items} == {"flite:slt", "festival:pc_diphone"}
    for d in items:
        wave, rate = load_audio(d.path)
        assert rate == 16000 and float(wave.abs().max()) > 0.05 and 0.2 < wave.shape[1] / rate < 2.0
    en7, it7 = load_audio(out / "en" / "7_flite-slt.wav")[0], load_audio(out / "it" / "7_festival-pc_diphone.wav")[0]
    assert en7.shape != it7.shape or not torch.allclose(en7, it7)  # "seven" is not "sette"
    assert read_spoken_digit_manifest(out) == items
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    assert festival_digits(out, voices) == items and {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == stamps
    with pytest.raises(DataError, match="unknown engine"):
        festival_digits(tmp_path / "other", [("sapi", "david", "en")])


def test_the_asterisk_packages_give_eight_real_voices_saying_every_digit():
    from tether.data.spoken_digits import asterisk_spoken_digits

    items = asterisk_spoken_digits()  # the packages README's install script installs
    voices = collections.defaultdict(set)
    for d in items:
        voices[d.speaker].add(d.label)
    assert len(voices) == 8 and all(labels == set(range(10)) for labels in voices.values())
    assert {d.language for d in items} == {"en", "es", "fr", "it", "ru"}
    gsm = [d for d in items if d.path.suffix == ".gsm"]
    assert {d.speaker for d in gsm} == {"asterisk:es", "asterisk:fr"}
    for d in items[::7]:
        wave, rate = load_audio(d.path)
        assert rate == 8000 and 0.2 < wave.shape[1] / rate < 2.0 and float(wave.abs().max()) > 0.05
