"""Per-pixel depth and surface normals of capsules and ellipsoids, analytically (no rasteriser).

Orthographic rays: pixel (row i, column j) is the ray through image point (u, v) = (j + 0.5, i + 0.5)
(the pixel-centre convention of `reidtools.vision.skeleton`: u = x * W) running along +z (depth,
away from the camera). Every primitive is intersected in closed form, batched over targets and pixels
in torch, so the same code runs on the CPU and on a GPU:

- capsule (segment a-b, radius r) = a finite cylinder and two spheres; the first hit of the union is
  the nearest of the cylinder's lateral hit within the segment and the two sphere hits (Quilez's
  ray-capsule intersection); normal = (p - closest point of the segment) / r;
- ellipsoid (centre c, semi-axis vectors A_k) = a unit sphere in the frame of A: solve
  |q0 + t q1|^2 = 1; normal ~ sum_k (q_k / |A_k|) A_k / |A_k|.

Encodings (the files `reid posegen poses` writes):
- depth.png: 16-bit grayscale (PNG mode I;16). 0 = background; a body pixel at depth z (pixels)
  holds round(1 + 65534 * clip(0.5 - (z - z_root) / (DEPTH_SPAN * s), 0, 1)), s = pixels per body
  height, z_root = the mid-hip's depth: near is bright (as in ControlNet/MiDaS depth maps), one body
  height of depth (DEPTH_SPAN) spans the range, centred on the root. `reid`'s readers scale it to 8
  bits (v * 255 / 65535) where an 8-bit map is needed; the pose guiders read it at 16-bit precision.
- normal.png: RGB, 0 = background; a unit normal n (camera frame x right, y down, z away) is written
  as round(255 * (1 + (n_x, -n_y, -n_z)) / 2): red = right, green = up, blue = towards the camera (a
  surface facing the camera is (128, 128, 255)).
"""

from __future__ import annotations

import numpy as np

DEPTH_SPAN = 1.0   # body heights of depth mapped onto the 16-bit range


def _grid(size, device, dtype):
    import torch

    h, w = size
    v = (torch.arange(h, device=device, dtype=dtype) + 0.5).view(1, h, 1)
    u = (torch.arange(w, device=device, dtype=dtype) + 0.5).view(1, 1, w)
    return u, v


def _capsule(u, v, a, b, r):
    """Hit depth (B, H, W; inf = miss) and normal (B, H, W, 3) of one capsule per batch item.
    a, b: (B, 3) end points (u, v, z in pixels); r: (B,) radius in pixels."""
    import torch

    inf = torch.tensor(float("inf"), device=u.device, dtype=u.dtype)
    a3, b3 = a.view(-1, 1, 1, 3), b.view(-1, 1, 1, 3)
    r1 = r.view(-1, 1, 1)
    # a local ray origin in front of the capsule keeps the float32 arithmetic well conditioned
    z0 = (torch.minimum(a[:, 2], b[:, 2]) - r - 1.0).view(-1, 1, 1)
    ox, oy = u - a3[..., 0], v - a3[..., 1]
    oz = z0 - a3[..., 2]
    ba = b3 - a3
    bx, by, bz = ba[..., 0], ba[..., 1], ba[..., 2]
    baba = bx * bx + by * by + bz * bz
    baoa = bx * ox + by * oy + bz * oz
    oaoa = ox * ox + oy * oy + oz * oz
    qa = baba - bz * bz
    qb = baba * oz - baoa * bz
    qc = baba * oaoa - baoa * baoa - r1 * r1 * baba
    h = qb * qb - qa * qc
    ok = (h >= 0) & (qa > 1e-9 * torch.clamp(baba, min=1e-12))
    t_body = (-qb - torch.sqrt(torch.clamp(h, min=0))) / torch.where(ok, qa, torch.ones_like(qa))
    y = baoa + t_body * bz
    t_body = torch.where(ok & (y > 0) & (y < baba), t_body, inf)

    def sphere(cx, cy, cz):
        sx, sy, sz = u - cx, v - cy, z0 - cz
        hb = sz
        hc = sx * sx + sy * sy + sz * sz - r1 * r1
        hh = hb * hb - hc
        return torch.where(hh >= 0, -hb - torch.sqrt(torch.clamp(hh, min=0)), inf)

    t = torch.minimum(t_body, torch.minimum(sphere(a3[..., 0], a3[..., 1], a3[..., 2]),
                                            sphere(b3[..., 0], b3[..., 1], b3[..., 2])))
    z = z0 + t
    # normal: from the closest point of the segment
    px, py, pz = u - a3[..., 0], v - a3[..., 1], z - a3[..., 2]
    k = torch.clamp(torch.nan_to_num((px * bx + py * by + pz * bz) / torch.clamp(baba, min=1e-12)), 0, 1)
    n = torch.stack([px - k * bx, py - k * by, pz - k * bz], dim=-1)
    n = n / torch.clamp(torch.linalg.vector_norm(n, dim=-1, keepdim=True), min=1e-12)
    return z, n


def _ellipsoid(u, v, c, axes):
    """c: (B, 3) centre, axes: (B, 3, 3) semi-axis vectors as rows."""
    import torch

    inf = torch.tensor(float("inf"), device=u.device, dtype=u.dtype)
    lengths = torch.clamp(torch.linalg.vector_norm(axes, dim=-1), min=1e-9)       # (B, 3)
    dirs = axes / lengths.unsqueeze(-1)                                             # (B, 3, 3) unit rows
    z0 = (c[:, 2] - lengths.max(dim=1).values - 1.0).view(-1, 1, 1)
    o = torch.stack(torch.broadcast_tensors(u - c[:, 0].view(-1, 1, 1), v - c[:, 1].view(-1, 1, 1),
                                            z0 - c[:, 2].view(-1, 1, 1)), dim=-1)     # (B, H, W, 3)
    q0 = torch.einsum("bhwj,bkj->bhwk", o, dirs) / lengths.view(-1, 1, 1, 3)
    q1 = (dirs[:, :, 2] / lengths).view(-1, 1, 1, 3)                                 # rd = +z
    A = (q1 * q1).sum(-1)
    Bq = (q0 * q1).sum(-1)
    C = (q0 * q0).sum(-1) - 1.0
    h = Bq * Bq - A * C
    t = torch.where(h >= 0, (-Bq - torch.sqrt(torch.clamp(h, min=0))) / A, inf)
    q = q0 + torch.nan_to_num(t, posinf=0.0).unsqueeze(-1) * q1
    n = torch.einsum("bhwk,bkj->bhwj", q / lengths.view(-1, 1, 1, 3), dirs)
    n = n / torch.clamp(torch.linalg.vector_norm(n, dim=-1, keepdim=True), min=1e-12)
    return z0 + t, n


def render(caps, radii, ells, size, *, device=None, dtype=None):
    """Depth (B, H, W; +inf = background) and unit normals (B, H, W, 3) of a batch of scenes.

    caps (B, P, 2, 3), radii (B, P), ells (B, E, 4, 3) (centre + 3 semi-axis vectors), all in pixel
    units (u, v, z); numpy arrays or tensors.
    """
    import torch

    dtype = dtype or torch.float32
    t = lambda x: torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, device=device, dtype=dtype)  # noqa: E731
    caps, radii, ells = t(caps), t(radii), t(ells)
    u, v = _grid(size, caps.device, dtype)
    bsz = caps.shape[0] if caps.ndim == 4 else ells.shape[0]
    h, w = size
    depth = torch.full((bsz, h, w), float("inf"), device=u.device, dtype=dtype)
    normal = torch.zeros((bsz, h, w, 3), device=u.device, dtype=dtype)
    parts = []
    for p in range(caps.shape[1] if caps.numel() else 0):
        a, b, r = caps[:, p, 0], caps[:, p, 1], radii[:, p]
        lo = torch.minimum(a[:, :2], b[:, :2]) - r.unsqueeze(-1)
        hi = torch.maximum(a[:, :2], b[:, :2]) + r.unsqueeze(-1)
        parts.append((_capsule, (a, b, r), lo, hi))
    for e in range(ells.shape[1] if ells.numel() else 0):
        c, ax = ells[:, e, 0], ells[:, e, 1:]
        ext = torch.linalg.vector_norm(ax[:, :, :2], dim=1)      # the ellipsoid's half-extent in u and v
        parts.append((_ellipsoid, (c, ax), c[:, :2] - ext, c[:, :2] + ext))
    for fn, args, lo, hi in parts:
        # only the pixels whose centres can hit the primitive (its screen box over the batch)
        j0, i0 = (int(max(0, np.floor(float(x) - 0.5))) for x in lo.min(dim=0).values)
        j1, i1 = (int(min(n, np.ceil(float(x) + 0.5))) for x, n in zip(hi.max(dim=0).values, (w, h)))
        if j0 >= j1 or i0 >= i1:
            continue
        z, n = fn(u[..., j0:j1], v[:, i0:i1], *args)
        cur = depth[:, i0:i1, j0:j1]
        nearer = z < cur
        depth[:, i0:i1, j0:j1] = torch.where(nearer, z, cur)
        normal[:, i0:i1, j0:j1] = torch.where(nearer.unsqueeze(-1), n, normal[:, i0:i1, j0:j1])
    return depth, normal


def encode_depth(depth: np.ndarray, z_root: float, scale: float) -> np.ndarray:
    """uint16 (H, W): the depth.png encoding above."""
    d = np.asarray(depth, dtype=np.float64)
    hit = np.isfinite(d)
    val = np.clip(0.5 - (np.where(hit, d, z_root) - z_root) / (DEPTH_SPAN * scale), 0.0, 1.0)
    return np.where(hit, np.round(1 + 65534 * val), 0).astype(np.uint16)


def decode_depth(img: np.ndarray, z_root: float, scale: float) -> np.ndarray:
    """Inverse of `encode_depth` (NaN = background)."""
    a = np.asarray(img, dtype=np.float64)
    val = (a - 1) / 65534
    return np.where(a > 0, z_root + (0.5 - val) * DEPTH_SPAN * scale, np.nan)


def encode_normal(normal: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3): the normal.png encoding above."""
    n = np.asarray(normal, dtype=np.float64) * np.array([1.0, -1.0, -1.0])
    rgb = np.round(255 * (1 + n) / 2)
    return np.where(np.asarray(hit)[..., None], np.clip(rgb, 0, 255), 0).astype(np.uint8)
