"""Tiny training shards for the reid train tests (solid-colour people, JSON metadata)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from reidtools.shards import ShardWriter

SIZE = (32, 16)


def person(pid: int, clothes: int, cam: int, k: int, size=SIZE) -> Image.Image:
    """A head colour per identity, a body colour per outfit, a little noise per image."""
    h, w = size
    g = np.random.default_rng(pid * 1000 + clothes * 10 + cam * 3 + k)
    img = np.zeros((h, w, 3), dtype=np.float32)
    img[: h // 4] = [(pid * 53) % 255, (pid * 97) % 255, (pid * 31) % 255]
    img[h // 4:] = [(clothes * 71 + 40) % 255, (clothes * 29 + 90) % 255, (clothes * 113) % 255]
    img += g.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_train(out: str, ids: int = 6, outfits: int = 2, cams: int = 2, per: int = 2, maxcount: int = 1000,
                prefix: str = "train", split: str = "train", pid0: int = 0) -> list[str]:
    keys = []
    with ShardWriter(out, prefix=prefix, maxcount=maxcount) as w:
        for pid in range(pid0, pid0 + ids):
            for o in range(outfits):
                for c in range(cams):
                    for k in range(per):
                        key = f"p{pid:03d}_o{o}_c{c}_{k}"
                        w.write({"__key__": key, "jpg": person(pid, pid * 10 + o, c, k),
                                 "json": {"dataset": "tiny", "split": split, "pid": pid, "camid": c,
                                          "clothes": f"{pid:03d}_{o}", "modality": "rgb"}})
                        keys.append(key)
    return keys


def write_generated(out: str, real_dir_keys: list[str], variants: int = 2, shared_clothes: bool = True,
                    bad_pid: int | None = None, maxcount: int = 1000) -> None:
    """`variants` generated images per real key, named KEY-inpaintNN; with `shared_clothes` every
    variant k wears catalogue garment `cat{k}` (try-on style: shared across identities)."""
    with ShardWriter(out, prefix="gen", maxcount=maxcount) as w:
        for key in real_dir_keys:
            pid = int(key[1:4])
            cam = int(key.split("_c")[1][0])
            for v in range(variants):
                clothes = f"cat{v}" if shared_clothes else f"{pid:03d}_g{v}"
                w.write({"__key__": f"{key}-inpaint{v:02d}", "jpg": person(pid, 500 + v, cam, v),
                         "json": {"dataset": "tiny", "split": "train",
                                  "pid": bad_pid if bad_pid is not None else pid, "camid": cam,
                                  "clothes": clothes, "modality": "rgb", "source": key,
                                  "history": [{"tool": "test"}]}})
