"""Image fields decode to the 8-bit pixels their mode means."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from reidtools.errors import SampleError
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
