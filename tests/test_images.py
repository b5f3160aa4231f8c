"""Image fields decode to the 8-bit pixels their mode means, and oversized images are refused unread."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from reidtools.errors import SampleError
from reidtools.shards import images
from reidtools.shards.sample import image, mask


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _tiff(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    return buf.getvalue()


def _sample(data: bytes, field: str = "png") -> dict:
    return {"__key__": "k1", "__shard__": "s.tar", field: data}


def _rgb(data: bytes) -> np.ndarray:
    return np.asarray(image(_sample(data)))


# ----------------------------------------------------------------------------- pixel values per mode
def test_16bit_png_is_scaled_not_clipped():
    # round(v * 255 / 65535): 0x8080 -> 128, 257 * 10 -> 10, 1000 -> 3.89 -> 4, 65535 -> 255
    v = np.array([[0, 1000, 2570, 32896, 65535]], np.uint16)
    src = Image.fromarray(v)
    assert src.mode == "I;16"
    out = _rgb(_png(src))
    assert out.shape == (1, 5, 3)
    assert out[0, :, 0].tolist() == [0, 4, 10, 128, 255]
    assert (out[..., 0] == out[..., 2]).all()


def test_32bit_integer_image_is_read_as_16_bit_data():
    v = np.array([[-5, 32896, 65535, 70000]], np.int32)
    out = _rgb(_tiff(Image.fromarray(v, "I")))
    assert out[0, :, 1].tolist() == [0, 128, 255, 255]


def test_float_image_is_read_as_0_to_1():
    v = np.array([[-1.0, 0.0, 0.25, 0.5, 1.0, 2.0]], np.float32)
    out = _rgb(_tiff(Image.fromarray(v, "F")))
    # 0.25 * 255 = 63.75 -> 64; 0.5 * 255 = 127.5 -> 128 (round half to even)
    assert out[0, :, 0].tolist() == [0, 0, 64, 128, 255, 255]


def test_alpha_is_composited_over_white():
    la = Image.new("LA", (3, 1))
    la.putdata([(100, 0), (100, 255), (100, 128)])
    # (100 * 128 + 255 * 127) / 255 = 177.2 -> 177
    assert _rgb(_png(la))[0, :, 0].tolist() == [255, 100, 177]
    rgba = Image.new("RGBA", (2, 1))
    rgba.putdata([(0, 0, 0, 0), (10, 20, 30, 255)])
    assert _rgb(_png(rgba)).tolist() == [[[255, 255, 255], [10, 20, 30]]]


def test_cmyk_multiplies_ink_and_black():
    c = Image.new("CMYK", (4, 1))
    c.putdata([(0, 0, 0, 0), (0, 0, 0, 255), (255, 0, 0, 0), (128, 0, 0, 128)])
    # R = (255 - C)(255 - K) / 255: (127 * 127) / 255 = 63.25 -> 63; G = 255 * 127 / 255 = 127
    out = _rgb(_tiff(c))
    assert out.tolist() == [[[255, 255, 255], [0, 0, 0], [0, 255, 255], [63, 127, 127]]]


def test_palette_image_with_and_without_transparency():
    p = Image.new("P", (2, 1))
    p.putpalette([1, 2, 3, 200, 100, 50] + [0] * 762)
    p.putdata([0, 1])
    assert _rgb(_png(p)).tolist() == [[[1, 2, 3], [200, 100, 50]]]
    p.info["transparency"] = 0
    assert _rgb(_png(p)).tolist() == [[[255, 255, 255], [200, 100, 50]]]


def test_parse_map_keeps_palette_indices_and_16_bit_ids():
    p = Image.new("P", (3, 1))
    p.putpalette([0, 0, 0] + [250, 250, 250] * 255)  # bright colours: luminance would not be the id
    p.putdata([0, 5, 19])
    assert np.asarray(mask(_sample(_png(p), "parse.png"), "parse.png")).tolist() == [[0, 5, 19]]
    ids = Image.fromarray(np.array([[0, 7, 255]], np.uint16))
    assert np.asarray(mask(_sample(_png(ids), "parse.png"), "parse.png")).tolist() == [[0, 7, 255]]


def test_parse_map_with_ids_above_255_is_an_error():
    ids = Image.fromarray(np.array([[0, 300]], np.uint16))
    with pytest.raises(SampleError, match=r"s\.tar: k1: field 'parse\.png': label ids 0\.\.300"):
        mask(_sample(_png(ids), "parse.png"), "parse.png")


def test_16bit_mask_is_an_intensity():
    m = Image.fromarray(np.array([[0, 32896, 65535]], np.uint16))
    assert np.asarray(mask(_sample(_png(m), "mask.png"))).tolist() == [[0, 128, 255]]


# ----------------------------------------------------------------------------- the pixel cap
def _blank_png(w: int, h: int) -> bytes:
    """A valid all-black L PNG, compressed row by row (never materialising w*h bytes)."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = bytes(w + 1)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def big_png() -> bytes:
    return _blank_png(10000, 10000)


def test_image_above_the_default_cap_is_refused_naming_shard_and_key(big_png):
    assert len(big_png) < 1_000_000  # a few hundred KB that would decode to 300 MB of RGB
    with pytest.raises(SampleError, match=r"^s\.tar: k1: field 'png' is 10000x10000 = 100000000 pixels, above the cap"):
        image(_sample(big_png))


def test_pillow_bomb_limit_is_reported_as_our_cap(monkeypatch):
    # 20000 x 20000 is past Pillow's own DecompressionBombError threshold (2 x 89 M pixels)
    monkeypatch.setitem(images._cap, "pixels", 10**9)
    header_only = _blank_png(20000, 20000)[:33] + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    with pytest.raises(SampleError, match=r"^s\.tar: k1: field 'png' is above the pixel cap"):
        image(_sample(header_only))


def test_cap_is_settable_and_images_below_it_decode(monkeypatch):
    monkeypatch.setitem(images._cap, "pixels", images.DEFAULT_MAX_PIXELS)
    monkeypatch.delenv(images.ENV, raising=False)
    small = _png(Image.new("RGB", (20, 10), (1, 2, 3)))
    assert image(_sample(small)).size == (20, 10)
    images.set_max_pixels(199)
    try:
        with pytest.raises(SampleError, match="20x10 = 200 pixels, above the cap of 199"):
            image(_sample(small))
    finally:
        images.set_max_pixels(images.DEFAULT_MAX_PIXELS)


def test_cli_max_pixels_refuses_with_one_line_naming_shard_and_key(synth_dir, tmp_path, capsys, monkeypatch):
    from reidtools.commands import cli
    from reidtools.commands._options import run_cli

    shard = str(synth_dir / "train-000000.tar")
    monkeypatch.delenv(images.ENV, raising=False)  # set_max_pixels exports it; undone after the test
    try:
        rc = run_cli(cli, ["filter", shard, "-o", str(tmp_path / "out"), "--rule", "size", "-q", "--max-pixels", "100"])
    finally:
        images.set_max_pixels(images.DEFAULT_MAX_PIXELS)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and f"{shard}: " in err[0] and "64 = 2048 pixels, above the cap of 100" in err[0], err
    assert not list((tmp_path / "out").glob("*.tar"))


def test_cli_default_cap_in_help_is_the_library_default():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "reidtools", "stats", "--help"], capture_output=True, text=True).stdout
    assert f"default: {images.DEFAULT_MAX_PIXELS} = 4096x4096" in " ".join(out.split())


def test_pack_decodes_bmp_through_the_same_decoder(tmp_path):
    from reidtools.data.pack.base import Item
    from reidtools.data.pack.write import load_sample

    path = tmp_path / "a.bmp"
    Image.new("RGB", (2, 1), (10, 20, 30)).save(path, format="BMP")
    sample = load_sample(Item(split="train", key="a", path=str(path), meta={}))
    assert np.asarray(Image.open(io.BytesIO(sample["png"]))).tolist() == [[[10, 20, 30], [10, 20, 30]]]
    # a header claiming 20000 x 20000 (1.2 GB of pixels) is refused before any pixel is read
    header = (b"BM" + struct.pack("<IHHI", 54, 0, 0, 54)
              + struct.pack("<IiiHHIIiiII", 40, 20000, 20000, 1, 24, 0, 0, 2835, 2835, 0, 0))
    path.write_bytes(header)
    with pytest.raises(SampleError, match=r"a\.bmp: a: field 'bmp' is .*above the .*cap"):
        load_sample(Item(split="train", key="a", path=str(path), meta={}))
    path.write_bytes(b"BM not really")
    with pytest.raises(SampleError, match=r"a\.bmp: a: field 'bmp' is not a readable image"):
        load_sample(Item(split="train", key="a", path=str(path), meta={}))
