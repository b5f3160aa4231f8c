"""ReID losses: label-smoothed cross-entropy, batch-hard triplet, CAL's clothes-based adversarial
loss, and HSGL's hard-sample adaptive triplet (HSAL, eqs. 5-7, 10, 12)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy_ls(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Cross-entropy against (1 - eps) one-hot + eps / C (Szegedy et al.; BoT's CrossEntropyLabelSmooth)."""
    log_p = F.log_softmax(logits, dim=1)
    n_classes = logits.size(1)
    q = torch.full_like(log_p, epsilon / n_classes)
    q.scatter_(1, targets.unsqueeze(1), 1.0 - epsilon + epsilon / n_classes)
    return (-q * log_p).sum(dim=1).mean()


def pairwise_distance(feat: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """n x n distances: Euclidean, or cosine distance 1 - cos."""
    if metric == "cosine":
        f = F.normalize(feat, dim=1)
        return 1.0 - f @ f.t()
    if metric != "euclidean":
        raise ValueError(f"unknown distance {metric!r}")
    sq = (feat * feat).sum(dim=1, keepdim=True)
    d2 = sq + sq.t() - 2.0 * feat @ feat.t()
    return d2.clamp(min=1e-12).sqrt()


def batch_hard_triplet(dist: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Eq. 11 with batch-hard mining (Hermans et al.): for each anchor the farthest positive and the
    nearest negative under `dist`; mean of max(0, d_ap - d_an + margin)."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    d_ap = dist.masked_fill(~same, float("-inf")).max(dim=1).values
    d_an = dist.masked_fill(same, float("inf")).min(dim=1).values
    return F.relu(d_ap - d_an + margin).mean()


def hard_sample_matrices(pids: torch.Tensor, clothes: torch.Tensor, cams: torch.Tensor):
    """HSGL eq. 5: IS_HP = same pid and (different clothes or different camera);
    IS_HN = different pid and same clothes. Clothes are labels of the string ids of the metadata."""
    same_pid = pids.unsqueeze(0) == pids.unsqueeze(1)
    same_clothes = clothes.unsqueeze(0) == clothes.unsqueeze(1)
    same_cam = cams.unsqueeze(0) == cams.unsqueeze(1)
    is_hp = same_pid & (~same_clothes | ~same_cam)
    is_hn = ~same_pid & same_clothes
    return is_hp, is_hn


def adjust_distances(dist: torch.Tensor, is_hp: torch.Tensor, is_hn: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eqs. 6-7 and Alg. 1 line 30: D' = D * HP_M * HN_M, HP_M = 1 + alpha on hard positives,
    HN_M = 1 - alpha on hard negatives, 1 elsewhere."""
    hp_m = torch.where(is_hp, 1.0 + alpha, 1.0).to(dist.dtype)
    hn_m = torch.where(is_hn, 1.0 - alpha, 1.0).to(dist.dtype)
    return dist * hp_m * hn_m


def hsal_triplet(dist: torch.Tensor, pids: torch.Tensor, clothes: torch.Tensor, cams: torch.Tensor, *,
                 alpha: float = 0.05, margin: float = 0.3) -> torch.Tensor:
    """Eq. 10: L_hatrip = L_trip(D) + 0.5 * L_trip(D'), batch-hard mining done on each matrix."""
    is_hp, is_hn = hard_sample_matrices(pids, clothes, cams)
    adjusted = adjust_distances(dist, is_hp, is_hn, alpha)
    return batch_hard_triplet(dist, pids, margin) + 0.5 * batch_hard_triplet(adjusted, pids, margin)


def clothes_adversarial_loss(cos_logits: torch.Tensor, clothes: torch.Tensor, positive_mask: torch.Tensor, *,
                             scale: float = 16.0, epsilon: float = 0.1) -> torch.Tensor:
    """CAL (Gu et al. 2022, Simple-CCReID ClothesBasedAdversarialLoss).

    s = scale * cos; for sample i with clothes class c_i and positive set P_i (the clothes classes of
    its identity): log p_ik = s_ik - log(exp(s_ik) + sum_{j not in P_i} exp(s_ij)); target mass
    (1 - eps) on c_i plus eps / |P_i| on every class of P_i; loss = mean_i sum_k -q_ik log p_ik.
    """
    s = scale * cos_logits
    pos = positive_mask.to(s.dtype)
    # log(exp(s_ik) + sum_{j not in P_i} exp(s_ij)), computed stably with logsumexp
    lse_neg = torch.logsumexp(s.masked_fill(pos > 0, float("-inf")), dim=1, keepdim=True)
    log_prob = s - torch.logaddexp(s, lse_neg)
    identity = torch.zeros_like(s).scatter_(1, clothes.unsqueeze(1), 1.0)
    q = (1.0 - epsilon) * identity + epsilon / pos.sum(dim=1, keepdim=True) * pos
    return (-q * log_prob).sum(dim=1).mean()
