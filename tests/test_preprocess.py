"""Tests for tether.preprocess: loading robustness, reference-exact geometry, and
parity with transformers' CLIP / SigLIP image processors (PIL backends)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from tether.preprocess import (
    NORMALIZATION_PRESETS,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    SIGLIP_MEAN,
    SIGLIP_STD,
    ImageDecodeError,
    ImagePreprocessor,
    PreprocessConfig,
    center_crop,
    load_image,
    normalize,
    random_resized_crop_params,
    resize_shortest,
    to_tensor,
)

DATA = Path(__file__).parent / "data"


def noise_image(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """High-frequency content, so a one-pixel misalignment shows up as a large error."""
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    return Image.fromarray(arr.squeeze(-1) if channels == 1 else arr, mode=mode)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


# ------------------------------------------------------------ transformers parity


@pytest.fixture(scope="module")
def hf_processors():
    """The PIL-backed processors: in transformers 5.x the default classes need
    torchvision (not a tether dependency) and fall back to these anyway."""
    pytest.importorskip("transformers")
    try:
        from transformers import CLIPImageProcessorPil as Clip, SiglipImageProcessorPil as Siglip
    except ImportError:  # transformers 4.x: the default classes are the PIL ones
        from transformers import CLIPImageProcessor as Clip, SiglipImageProcessor as Siglip
    return Clip, Siglip


def hf_clip(Clip, size: int):
    return Clip(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
        resample=Image.Resampling.BICUBIC,
        do_convert_rgb=True,
    )


def hf_pixels(proc, img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(proc(images=[img], return_tensors="np")["pixel_values"][0]))


def crop_offsets_disagree(w: int, h: int, size: int) -> bool:
    """HF centre-crops at floor((d - S) / 2); torchvision/OpenAI at round-half-even,
    which is one pixel further when d - S = 3 (mod 4)."""
    long_side = int(size * max(w, h) / min(w, h))
    return (long_side - size) % 4 == 3


CLIP_SIZES = [
    (224, 224, 224),  # square, resize is a no-op
    (300, 200, 224),  # 336x224 after resize, crop offset exactly 56
    (200, 300, 224),  # portrait
    (301, 199, 224),  # odd sizes: long side 338 -> offset 57 by both rules
    (250, 187, 224),  # 299 -> offset 37.5: round-half-even 38 vs floor 37
    (37, 50, 64),  # upsampling, long side 86 -> offset 11 by both rules
    (64, 67, 64),  # 67 -> offset 1.5: torchvision 2, HF 1
    (65, 64, 64),  # 65 -> offset 0.5: both 0
]


@pytest.mark.parametrize("w,h,size", CLIP_SIZES)
def test_clip_matches_transformers(hf_processors, w, h, size):
    Clip, _ = hf_processors
    img = noise_image(w, h, seed=w * 1000 + h)
    ours = ImagePreprocessor(PreprocessConfig.preset("openai", size))(img)
    ref = hf_pixels(hf_clip(Clip, size), img)
    assert ours.shape == ref.shape == (3, size, size)
    assert ours.dtype == torch.float32
    if not crop_offsets_disagree(w, h, size):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    else:
        # Same resized pixels, crop window one pixel further right/down than HF's.
        assert (ours - ref).abs().max() > 0.5  # noise makes the shift visible...
        if w > h:  # ...and undoing the shift makes them identical.
            torch.testing.assert_close(ours[:, :, :-1], ref[:, :, 1:], atol=1e-5, rtol=0)
        else:
            torch.testing.assert_close(ours[:, :-1, :], ref[:, 1:, :], atol=1e-5, rtol=0)


def test_clip_crop_offset_rule_sweep(hf_processors):
    """Every excess 0..11 over the crop size: parity iff excess % 4 != 3."""
    Clip, _ = hf_processors
    proc, ours = hf_clip(Clip, 32), ImagePreprocessor(PreprocessConfig.preset("clip", 32))
    mismatched = []
    for excess in range(12):
        img = noise_image(32 + excess, 32, seed=excess)
        if not torch.allclose(ours(img), hf_pixels(proc, img), atol=1e-5, rtol=0):
            mismatched.append(excess)
    assert mismatched == [3, 7, 11]


def test_clip_transparency_matches_transformers(hf_processors):
    Clip, _ = hf_processors
    img = noise_image(120, 90, seed=3, mode="RGBA")  # random alpha in every pixel
    ours = ImagePreprocessor(PreprocessConfig.preset("openai", 64))(img)
    torch.testing.assert_close(ours, hf_pixels(hf_clip(Clip, 64), img), atol=1e-5, rtol=0)


@pytest.mark.parametrize("w,h,size,mode", [
    (224, 224, 224, "RGB"), (300, 200, 224, "RGB"), (333, 101, 224, "RGB"),
    (17, 29, 64, "RGB"), (250, 187, 64, "RGBA"), (81, 47, 64, "L"),
])
def test_siglip_matches_transformers(hf_processors, w, h, size, mode):
    _, Siglip = hf_processors
    proc = Siglip(size={"height": size, "width": size}, image_mean=list(SIGLIP_MEAN),
                  image_std=list(SIGLIP_STD), resample=Image.Resampling.BICUBIC, do_convert_rgb=True)
    img = noise_image(w, h, seed=w + h, mode=mode)
    ours = ImagePreprocessor(PreprocessConfig.preset("siglip", size))(img)
    ref = hf_pixels(proc, img)
    assert ours.shape == ref.shape == (3, size, size)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


# -------------------------------------------------------------------- loading


def test_exif_orientation_fixture_is_rotated():
    path = DATA / "exif_orientation6.jpg"
    with Image.open(path) as raw:
        assert raw.size == (32, 16) and raw.getexif()[0x0112] == 6  # fixture sanity
        loaded = [load_image(src) for src in (path, str(path), path.read_bytes(), raw)]
    for img in loaded:
        assert img.mode == "RGB" and img.size == (16, 32)
        # Stored top-left red block ends up top-right after a 90 degree clockwise turn.
        r, g, b = img.getpixel((12, 3))
        assert r > 200 and g < 60 and b < 60
        r, g, b = img.getpixel((3, 3))
        assert b > 200 and r < 60


def test_exif_orientation_3_generated():
    img = Image.new("RGB", (20, 10), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 5, 5))
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180
    out = load_image(encode(img, "JPEG", quality=95, subsampling=0, exif=exif.tobytes()))
    assert out.size == (20, 10)
    assert out.getpixel((18, 8))[0] > 200 and out.getpixel((1, 1))[2] > 200


def test_rgba_transparency_composited_on_white():
    img = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    img.putpixel((1, 0), (10, 20, 30, 255))
    img.putpixel((2, 0), (0, 0, 0, 128))
    out = load_image(encode(img, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (10, 20, 30)
    assert all(abs(c - 127) <= 1 for c in out.getpixel((2, 0)))  # half black on white


def test_la_and_palette_transparency_become_white():
    la = Image.new("LA", (2, 1), (40, 255))
    la.putpixel((0, 0), (0, 0))
    out = load_image(encode(la, "PNG"))
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0)) == (40, 40, 40)

    with Image.open(DATA / "palette_transparent.png") as raw:
        assert raw.mode == "P" and raw.info.get("transparency") == 0  # fixture sanity
    out = load_image(DATA / "palette_transparent.png")
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)  # index 0: green but transparent
    assert out.getpixel((3, 3)) == (200, 10, 10)


def test_rgb_with_trns_colour_key_becomes_white():
    img = Image.new("RGB", (2, 1), (1, 2, 3))
    img.putpixel((1, 0), (9, 9, 9))
    out = load_image(encode(img, "PNG", transparency=(1, 2, 3)))
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0)) == (9, 9, 9)


def test_greyscale_cmyk_and_bilevel_become_rgb():
    out = load_image(Image.new("L", (2, 2), 77))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (77, 77, 77)
    out = load_image(encode(Image.new("CMYK", (2, 2), (255, 0, 0, 0)), "JPEG", quality=100))
    assert out.mode == "RGB"
    r, g, b = out.getpixel((0, 0))
    assert r < 10 and g > 245 and b > 245  # pure cyan
    out = load_image(Image.new("1", (2, 2), 1))
    assert out.getpixel((1, 1)) == (255, 255, 255)


def test_16bit_greyscale_is_scaled_not_clipped():
    with Image.open(DATA / "gray16.png") as raw:
        assert raw.mode == "I;16"  # fixture sanity
    out = load_image(DATA / "gray16.png")
    assert out.mode == "RGB"
    # Pillow's own convert("RGB") would give 0, 255, 255, 255 here.
    assert [out.getpixel((x, 0))[0] for x in range(4)] == [0, 64, 128, 255]
    assert out.getpixel((2, 0)) == (128, 128, 128)


def test_float_image_in_unit_range_is_scaled():
    img = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert [load_image(img).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_corrupt_bytes_raise_with_name():
    with pytest.raises(ImageDecodeError, match="photo_123.jpg") as info:
        load_image(b"definitely not an image", name="photo_123.jpg")
    assert isinstance(info.value, ValueError) and info.value.source == "photo_123.jpg"
    with pytest.raises(ImageDecodeError, match="<bytes>"):
        load_image(b"\x89PNG\r\n\x1a\n garbage")


def test_corrupt_file_raises_with_path(tmp_path):
    bad = tmp_path / "broken_file.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ImageDecodeError, match="broken_file.png"):
        load_image(bad)


def test_truncated_jpeg_fails_at_load(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    data = encode(noise_image(64, 64), "JPEG", quality=90)
    path = tmp_path / "cut_short.jpg"
    path.write_bytes(data[: len(data) // 2])
    Image.open(path).close()  # the header alone parses: lazy opening would not notice
    with pytest.raises(ImageDecodeError, match="cut_short.jpg") as info:
        load_image(path)
    assert "truncated" in str(info.value)
    with pytest.raises(ImageDecodeError, match="in_memory.jpg"):
        load_image(data[: len(data) // 2], name="in_memory.jpg")


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(ImageDecodeError, match="no_such_image.jpg.*not found"):
        load_image(tmp_path / "no_such_image.jpg")
    with pytest.raises(ImageDecodeError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(TypeError):
        load_image(12345)  # type: ignore[arg-type]


def test_pil_input_not_mutated():
    img = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    load_image(img)
    assert img.mode == "RGBA" and img.getpixel((0, 0)) == (0, 0, 0, 0)


# ------------------------------------------------------------------- geometry


@pytest.mark.parametrize("w,h,size,expected", [
    (300, 200, 224, (336, 224)),
    (200, 300, 224, (224, 336)),
    (299, 200, 224, (334, 224)),  # 334.88 truncates to 334, rounding would give 335
    (224, 224, 224, (224, 224)),
    (10, 1000, 224, (224, 22400)),
    (50, 37, 64, (86, 64)),  # 86.49 -> 86
])
def test_resize_shortest_sizes(w, h, size, expected):
    assert resize_shortest(Image.new("RGB", (w, h)), size).size == expected


def coord_image(w: int, h: int) -> Image.Image:
    """R = x mod 256, G = y mod 256: a crop's offset can be read off its corner pixels."""
    ys, xs = np.mgrid[0:h, 0:w]
    return Image.fromarray(np.stack([xs, ys, np.full_like(xs, 7)], -1).astype(np.uint8))


@pytest.mark.parametrize("w,h,size,left,top", [
    (336, 224, 224, 56, 0),
    (225, 224, 224, 0, 0),  # round(0.5) = 0
    (227, 230, 224, 2, 3),  # round(1.5) = 2, round(3.0) = 3
    (229, 224, 224, 2, 0),  # round(2.5) = 2 (half to even)
    (231, 224, 224, 4, 0),  # round(3.5) = 4
])
def test_center_crop_offsets(w, h, size, left, top):
    out = center_crop(coord_image(w, h), size)
    assert out.size == (size, size)
    assert out.getpixel((0, 0))[:2] == (left, top)
    far = (left + size - 1) % 256, (top + size - 1) % 256
    assert out.getpixel((size - 1, size - 1))[:2] == far


def test_center_crop_pads_with_zeros():
    img = Image.new("RGB", (5, 8), (9, 9, 9))
    out = np.asarray(center_crop(img, 10))
    assert out.shape == (10, 10, 3)
    # torchvision pads floor((S - d) / 2) before, the rest after: cols 2..6, rows 1..8.
    assert (out[1:9, 2:7] == 9).all()
    assert out[0].sum() == 0 and out[9].sum() == 0
    assert out[:, :2].sum() == 0 and out[:, 7:].sum() == 0


def test_eval_transform_non_square_uses_centre():
    # 300x200 with a 1-px-wide marker column at x = 150, the middle of the image.
    img = Image.new("RGB", (300, 200), (0, 0, 0))
    img.paste((255, 255, 255), (150, 0, 151, 200))
    out = ImagePreprocessor(PreprocessConfig.preset("openai", 224))(img)
    assert out.shape == (3, 224, 224)
    # Resized width 336, the marker lands at ~168; the crop keeps 56..280 -> column ~112.
    profile = out[0].mean(0)
    assert abs(int(profile.argmax()) - 112) <= 1


def test_to_tensor_and_normalize():
    img = Image.fromarray(np.array([[[0, 51, 255], [255, 102, 0]]], dtype=np.uint8))
    t = to_tensor(img)
    assert t.shape == (3, 1, 2) and t.dtype == torch.float32
    torch.testing.assert_close(t[:, 0, 0], torch.tensor([0.0, 0.2, 1.0]))
    n = normalize(t, (0.5, 0.5, 0.5), (0.5, 0.25, 0.5))
    torch.testing.assert_close(n[:, 0, 0], torch.tensor([-1.0, -1.2, 1.0]))
    assert normalize(t.unsqueeze(0), (0.5,) * 3, (0.5,) * 3).shape == (1, 3, 1, 2)


# -------------------------------------------------------------- train transform


def test_train_transform_deterministic_per_seed():
    pre = ImagePreprocessor(PreprocessConfig.preset("openai", 32))
    img = noise_image(80, 60, seed=1)

    def run(seed: int) -> list[torch.Tensor]:
        tf = pre.train_transform(scale=(0.3, 1.0), generator=torch.Generator().manual_seed(seed))
        return [tf(img) for _ in range(3)]

    a, b, c = run(0), run(0), run(1)
    assert all(x.shape == (3, 32, 32) for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])  # the generator advances between calls
    assert not any(torch.equal(x, y) for x, y in zip(a, c))


def test_random_resized_crop_params_within_bounds_and_fallback():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_params(100, 60, (0.08, 1.0), (3 / 4, 4 / 3), g)
        assert 0 < h and 0 < w and top + h <= 60 and left + w <= 100
        assert 0.08 * 6000 * 0.9 <= h * w <= 6000
    # Square crop needs 32x32 but the image is only 10 tall: 10 failures -> centre crop
    # with the aspect clamped to the ratio range.
    assert random_resized_crop_params(100, 10, (1.0, 1.0), (1.0, 1.0), g) == (0, 45, 10, 10)
    assert random_resized_crop_params(10, 100, (1.0, 1.0), (1.0, 1.0), g) == (45, 0, 10, 10)
    assert random_resized_crop_params(50, 50, (1.0, 1.0), (1.0, 1.0), g) == (0, 0, 50, 50)


def test_train_transform_full_crop_equals_eval():
    pre = ImagePreprocessor(PreprocessConfig.preset("openai", 48))
    img = noise_image(64, 64, seed=5)
    tf = pre.train_transform(scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=torch.Generator())
    torch.testing.assert_close(tf(img), pre(img), atol=0, rtol=0)


# --------------------------------------------------------------- batch + config


def test_batch_accepts_mixed_inputs(tmp_path):
    pre = ImagePreprocessor(PreprocessConfig.preset("siglip", 32))
    path = tmp_path / "a.png"
    noise_image(40, 30, seed=1).save(path)
    inputs = [path, str(DATA / "exif_orientation6.jpg"), noise_image(20, 50, seed=2),
              encode(noise_image(33, 33, seed=3), "PNG")]
    out = pre.batch(inputs)
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
    for row, item in zip(out, inputs):
        assert torch.equal(row, pre(item))
    with pytest.raises(ValueError):
        pre.batch([])
    with pytest.raises(TypeError):
        pre.batch(str(path))


def test_config_presets_and_roundtrip():
    assert NORMALIZATION_PRESETS["imagenet"] == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    clip = PreprocessConfig.preset("clip", 336)
    assert clip == PreprocessConfig.preset("openai", 336)
    assert (clip.image_size, clip.resize_mode, clip.interpolation) == (336, "shortest", "bicubic")
    assert (clip.mean, clip.std) == NORMALIZATION_PRESETS["openai"]
    sig = PreprocessConfig.preset("siglip", 384)
    assert (sig.resize_mode, sig.mean, sig.std) == ("squash", SIGLIP_MEAN, SIGLIP_STD)
    assert PreprocessConfig() == PreprocessConfig.preset("openai", 224)
    for cfg in (clip, sig, PreprocessConfig(interpolation="bilinear")):
        assert PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="crop_pct"):
        PreprocessConfig.from_dict({**clip.to_dict(), "crop_pct": 0.875})
    with pytest.raises(ValueError, match="nope"):
        PreprocessConfig.preset("nope", 224)


@pytest.mark.parametrize("kwargs", [
    {"image_size": 0}, {"image_size": 22.4}, {"resize_mode": "crop"},
    {"interpolation": "nearest"}, {"mean": (0.5, 0.5)}, {"std": (0.5, 0.0, 0.5)},
])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        PreprocessConfig(**kwargs)


def test_bilinear_differs_from_bicubic():
    img = noise_image(90, 70, seed=9)
    a = ImagePreprocessor(PreprocessConfig(image_size=32))(img)
    b = ImagePreprocessor(PreprocessConfig(image_size=32, interpolation="bilinear"))(img)
    assert a.shape == b.shape and not torch.allclose(a, b)
