"""DCAC (seed 003): PCL + memory bank (eqs. 6-7), the condition (eq. 12, Table 7), and the gradient
path from the diffusion loss into the ReID encoder (eqs. 9-13)."""

from __future__ import annotations

import math

import pytest
import torch

from reidtools.errors import ReidError
from reidtools.reid.dcac import IdCondition, PrototypeMemory


# ----------------------------------------------------------------------------- eqs. 6-7 by hand
def test_pcl_loss_three_ids_by_hand():
    # M rows (already unit): e_x, e_y, -e_x; z = (2, 0) -> (1, 0); tau = 0.5
    # logits z.M[k]/tau = (2, 0, -2); y = 0: L = -log(e^2 / (e^2 + 1 + e^-2)) = log(1 + e^-2 + e^-4)
    mem = PrototypeMemory(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), temperature=0.5)
    loss = mem.loss(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-2) + math.exp(-4)), abs=1e-6)  # 0.142932
    # y = 2 for the same z: L = log(e^-2 ... ) = -(-2) + log(e^2 + 1 + e^-2) = 4.142932
    loss2 = mem.loss(torch.tensor([[2.0, 0.0]]), torch.tensor([2]))
    assert float(loss2) == pytest.approx(4 + math.log(1 + math.exp(-2) + math.exp(-4)), abs=1e-5)
    # the paper's tau = 0.01: logits (100, 0, -100), L ~ e^-100 ~ 0
    assert float(PrototypeMemory(mem.features).loss(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))) < 1e-6


def test_memory_hard_update_three_ids_by_hand():
    # id 0 has z = (0.6, 0.8) and (1, 0) in the batch; similarities to M[0] = (1, 0): 0.6 and 1.0, so
    # z_hard = (0.6, 0.8); M[0] = 0.2 (1, 0) + 0.8 (0.6, 0.8) = (0.68, 0.64), / 0.933809 = (0.728200, 0.685365)
    # id 2 has one sample (0, -1): M[2] = 0.2 (-1, 0) + 0.8 (0, -1) = (-0.2, -0.8) / 0.824621
    mem = PrototypeMemory(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), momentum=0.2)
    z = torch.tensor([[0.6, 0.8], [2.0, 0.0], [0.0, -3.0]], requires_grad=True)
    loss = mem.loss(z, torch.tensor([0, 0, 2]))
    mem.update(z, torch.tensor([0, 0, 2]))
    loss.backward()                                   # the update (eq. 7) comes after the loss, before backward
    assert z.grad is not None
    assert mem.features[0].tolist() == pytest.approx([0.728200, 0.685365], abs=1e-5)
    assert mem.features[1].tolist() == pytest.approx([0.0, 1.0])              # absent from the batch
    assert mem.features[2].tolist() == pytest.approx([-0.242536, -0.970143], abs=1e-5)


def test_memory_centroids_of_normalised_features():
    # id 0: (2, 0), (0, 3) -> unit (1, 0), (0, 1) -> mean (0.5, 0.5) -> (0.7071, 0.7071); id 1: (0, -5) -> (0, -1)
    feats = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, -5.0]])
    mem = PrototypeMemory.from_features(feats, torch.tensor([0, 0, 1]), 2)
    assert mem.features.flatten().tolist() == pytest.approx([0.707107, 0.707107, 0.0, -1.0], abs=1e-5)
    with pytest.raises(ReidError, match="identity label 2 has no training image"):
        PrototypeMemory.from_features(feats, torch.tensor([0, 0, 1]), 3)


# ----------------------------------------------------------------------------- eq. 12 by hand
E3 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def _cond(mode, prompts, tau=0.5):
    c = IdCondition(3, 2, 2, mode=mode, tau=tau)
    with torch.no_grad():
        c.prompts.copy_(prompts)
    return c


def test_correlation_condition_three_ids_by_hand():
    # logits / tau = (ln 2, 0, 0) -> p = (1/2, 1/4, 1/4); c = 1/2 (1,0) + 1/4 (0,1) + 1/4 (1,1) = (0.75, 0.5)
    logits = torch.tensor([[0.5 * math.log(2), 0.0, 0.0]], requires_grad=True)
    c = _cond("correlation", E3)(logits, torch.zeros(1, 2), torch.tensor([1]))
    assert c.shape == (1, 1, 2)                                       # one cross-attention token
    assert c[0, 0].tolist() == pytest.approx([0.75, 0.5])
    c.sum().backward()
    # d(c1 + c2)/dlogit_j = p_j (s_j - sum_k p_k s_k) / tau with s = (1, 1, 2): sum p s = 1.25
    # -> (0.5 (1 - 1.25), 0.25 (1 - 1.25), 0.25 (2 - 1.25)) / 0.5 = (-0.25, -0.125, 0.375)
    assert logits.grad[0].tolist() == pytest.approx([-0.25, -0.125, 0.375], abs=1e-6)


def test_class_and_instance_conditions_by_hand():
    logits = torch.tensor([[0.5 * math.log(2), 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([1])
    # class (paper): p_1 e_1 = 0.25 (0, 1)
    assert _cond("class", E3)(logits, torch.zeros(1, 2), y)[0, 0].tolist() == pytest.approx([0.0, 0.25])
    # class-released: p_1 e_1 / p_1 = e_1, and no gradient reaches the logits
    c = _cond("class-released", E3)(logits, torch.zeros(1, 2), y)
    assert c[0, 0].tolist() == pytest.approx([0.0, 1.0])
    c.sum().backward()
    assert logits.grad.abs().max() < 1e-6
    # instance: normalize((3, 4)) = (0.6, 0.8); (0.6, 0.8) @ [[1, 2], [3, 4]] = (3.0, 4.4)
    inst = _cond("instance", torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert inst(logits, torch.tensor([[3.0, 4.0]]), y)[0, 0].tolist() == pytest.approx([3.0, 4.4])
    with pytest.raises(ReidError, match="--condition"):
        IdCondition(3, 2, 2, mode="onehot")


# ----------------------------------------------------------------------------- the gradient path
@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from reidtools.testing.sd import build_txt2img_pipeline

    folder = tmp_path_factory.mktemp("dcac_sd")
    build_txt2img_pipeline(str(folder))
    return str(folder)


def _setup(tiny_sd, condition="correlation", n_ids=3):
    from reidtools.reid.backbones import build_backbone
    from reidtools.reid.dcac import DcacHead, freeze_patch_projection, load_diffusion_branch
    from reidtools.reid.heads import ReidModel

    torch.manual_seed(0)
    model = ReidModel(build_backbone("vit-tiny"), n_ids)
    freeze_patch_projection(model.backbone)
    head = DcacHead(load_diffusion_branch(tiny_sd, lora_rank=4), n_ids, model.dim, condition=condition, tau=1.0)
    return model, head


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_diffusion_loss_alone_trains_the_encoder_not_the_unet(tiny_sd):
    """lambda * L_dif with the ReID losses off: the encoder, LoRA and ID prompts move; U-Net base
    weights, the VAE and the frozen patch projection do not."""
    model, head = _setup(tiny_sd)
    unet_base = {k: v for k, v in _snapshot(head.branch.unet).items() if "lora_" not in k}
    vae = _snapshot(head.branch.vae)
    enc = _snapshot(model.backbone)
    lora = {k: v for k, v in _snapshot(head.branch.unet).items() if "lora_" in k}
    prompts = head.condition.prompts.detach().clone()
    assert lora and all(not p.requires_grad for n, p in head.branch.unet.named_parameters() if "lora_" not in n)

    params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    model.train()
    head.train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 32, 16, generator=g)
    x_dif = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    labels = torch.tensor([0, 0, 1, 2])
    out = model(x)
    loss = 1.0 * head(x_dif, out["logits"], out["bn"], labels, generator=g)   # lambda = 1, no L_ReID
    loss.backward()
    grads = [p.grad for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert any(gr is not None and gr.abs().sum() > 0 for gr in grads)
    opt.step()

    after_unet = _snapshot(head.branch.unet)
    assert all(torch.equal(after_unet[k], v) for k, v in unet_base.items())
    assert all(torch.equal(v, vae[k]) for k, v in _snapshot(head.branch.vae).items())
    assert any(not torch.equal(after_unet[k], v) for k, v in lora.items())
    assert not torch.equal(head.condition.prompts, prompts)
    after_enc = _snapshot(model.backbone)
    patch = [k for k in enc if "patch_embedding" in k]
    assert patch and all(torch.equal(after_enc[k], enc[k]) for k in patch)
    moved = [k for k in enc if k not in patch and not torch.equal(after_enc[k], enc[k])]
    assert any("encoder.layers" in k for k in moved)


def test_released_class_condition_cuts_the_path_to_the_encoder(tiny_sd):
    model, head = _setup(tiny_sd, condition="class-released")
    out = model(torch.randn(2, 3, 32, 16))
    head(torch.zeros(2, 3, 32, 32), out["logits"], out["bn"], torch.tensor([0, 1])).backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert all(gr is None or gr.abs().max() < 1e-9 for gr in grads)


def test_gradient_checkpointing_keeps_the_gradient(tiny_sd):
    model, head = _setup(tiny_sd)
    head.branch.enable_gradient_checkpointing()
    model.train()
    head.train()
    out = model(torch.randn(2, 3, 32, 16))
    head(torch.zeros(2, 3, 32, 32), out["logits"], out["bn"], torch.tensor([0, 1])).backward()
    assert head.condition.prompts.grad is not None and head.condition.prompts.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_missing_diffusion_model_is_one_clear_error(tmp_path):
    from reidtools.reid.dcac import load_diffusion_branch

    with pytest.raises(ReidError, match="not in the local cache"):
        load_diffusion_branch("nobody/no-such-sd")
    (tmp_path / "vae").mkdir()
    with pytest.raises(ReidError, match="cannot load a Stable Diffusion"):
        load_diffusion_branch(str(tmp_path))


def test_lora_targets_paper_and_released(tiny_sd):
    """Paper: attention q/k/v/out + both feed-forward Linears; released code: GEGLU projection only."""
    from reidtools.reid.dcac import load_diffusion_branch

    def adapted(targets):
        unet = load_diffusion_branch(tiny_sd, lora_rank=2, lora_targets=targets).unet
        return {n.split(".lora_A")[0] for n, _ in unet.named_parameters() if ".lora_A" in n}

    paper, released = adapted("paper"), adapted("released")
    suffixes = lambda names: {n.split("transformer_blocks.0.")[1] for n in names if "transformer_blocks.0." in n}  # noqa: E731
    assert suffixes(paper) == {"attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                               "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2"}
    assert paper - released == {n for n in paper if n.endswith("ff.net.2")} and released < paper
    with pytest.raises(ReidError, match="--lora-targets"):
        load_diffusion_branch(tiny_sd, lora_targets="all")


# ----------------------------------------------------------------------------- §5.2 schedule and values
def test_lr_schedule_of_section_5_2_by_hand():
    """§5.2: "a base learning rate of 5 x 10^-6 regulated by a step scheduler, which starts at a
    learning rate of 5 x 10^-7 with a linear warmup in the first 10 epochs. The learning rate is
    multiplied with a factor of 0.1 at the 30th and 50th epoch." (epochs 0-based here)"""
    from reidtools.reid.config import DCAC_DEFAULTS, TrainConfig, lr_at

    cfg = TrainConfig(method="dcac")
    for name, (value, _) in DCAC_DEFAULTS.items():
        setattr(cfg, name, value)
    assert lr_at(cfg, 0) == pytest.approx(5e-7, rel=1e-12)     # the warm-up starts at 5e-7
    assert lr_at(cfg, 5) == pytest.approx(2.75e-6, rel=1e-12)  # halfway: 5e-7 + (5e-6 - 5e-7) / 2
    assert lr_at(cfg, 9) == pytest.approx(4.55e-6, rel=1e-12)  # 5e-7 + 0.9 * 4.5e-6
    assert lr_at(cfg, 10) == pytest.approx(5e-6, rel=1e-12)    # warm-up over: the base rate
    assert lr_at(cfg, 29) == pytest.approx(5e-6, rel=1e-12)
    assert lr_at(cfg, 30) == pytest.approx(5e-7, rel=1e-12)    # x 0.1 at the 30th
    assert lr_at(cfg, 50) == pytest.approx(5e-8, rel=1e-12)    # x 0.1 again at the 50th
    assert lr_at(cfg, 59) == pytest.approx(5e-8, rel=1e-12)


def test_dcac_defaults_are_section_5_2():
    """§5.2: "We adopt the image encoder of the pre-trained CLIP ViT-B-16 [...] The input image size for
    the Re-ID model is 256 x 128, and the dimension of the encoded feature is 512. The momentum gamma
    [...] is set to 0.2, and the temperature factor tau in the PCL loss is set to 0.01. [...] The input
    image size for diffusion is 128 x 128. [...] balancing factor lambda in the entire loss is set to 1.
    [...] We train our entire framework for 60 epochs using the Adam optimizer with a base learning rate
    of 5 x 10^-6 [...] We adopt a weight decay of 1 x 10^-4. The batch size is set to 64, employing a
    PK-sampling strategy with randomly selected 16 IDs and 4 samples per ID." Eq. 9: h' = hW + (1/r) hAB."""
    from reidtools.reid.config import TrainConfig, resolve

    # a config unlike DCAC's everywhere the general defaults allow, as a config file could give
    cfg, sources = resolve(TrainConfig(method="dcac", epochs=120, size=(384, 192), batch_p=8, lr=3.5e-4), {})
    assert cfg.backbone == "clip-b16" and cfg.size == (256, 128) and cfg.epochs == 60
    assert (cfg.batch_p, cfg.batch_k) == (16, 4) and cfg.batch_p * cfg.batch_k == 64
    assert cfg.lr == 5e-6 and cfg.weight_decay == 1e-4 and cfg.gamma == 0.1 and cfg.milestones == [30, 50]
    assert cfg.pcl_momentum == 0.2 and cfg.pcl_temperature == 0.01 and cfg.dif_weight == 1.0
    assert cfg.diffusion_size == 128 and cfg.triplet_weight == 0.0
    assert cfg.lora_alpha == 1.0            # eq. 9's 1/r is peft's alpha / r with alpha = 1
    for name in ("size", "epochs", "batch_p", "lr", "weight_decay", "milestones", "warmup_epochs", "diffusion_size"):
        assert "§5.2" in sources[name], (name, sources[name])
    cfg.milestones.append(70)                # the run's own list, not the defaults table's
    assert resolve(TrainConfig(method="dcac"), {})[0].milestones == [30, 50]


@pytest.mark.parametrize("datasets,tau,rank", [
    (["cuhk03np"], 0.1, 8), (["market1501"], 0.6, 8), (["dukemtmc"], 0.6, 8), (["msmt17"], 1.0, 32),
    (["market1501", "dukemtmc", "cuhk03np"], 1.0, 32), (["dukemtmc", "msmt17"], 1.0, 32)])
def test_tau_and_rank_follow_the_training_sources(datasets, tau, rank):
    """§5.2: "The rank r of the LoRA adapters is set to 8 for all single-source experiments except for
    those trained on MSMT17. For single-source experiments trained on MSMT17 and all multi-source
    experiments, r is set to 32. [...] tau_c [...] is set to 0.1 for training on CUHK03-NP, 0.6 for
    training on Market1501 and DukeMTMC-reID, and 1.0 for training on MSMT17 and multi-source settings.\""""
    from reidtools.reid.config import TrainConfig, dcac_dataset_defaults

    cfg, sources = TrainConfig(method="dcac"), {}
    dcac_dataset_defaults(cfg, sources, set(datasets))
    assert (cfg.condition_tau, cfg.lora_rank) == (tau, rank)
    assert "§5.2" in sources["condition_tau"] and "§5.2" in sources["lora_rank"]
    assert ("multi-source" in sources["lora_rank"]) == (len(datasets) > 1)


def test_tau_and_rank_overrides_and_unlisted_datasets():
    from reidtools.reid.config import TrainConfig, dcac_dataset_defaults

    cfg, sources = TrainConfig(method="dcac", condition_tau=0.3, lora_rank=16), {"condition_tau": "command line",
                                                                                 "lora_rank": "command line"}
    dcac_dataset_defaults(cfg, sources, {"msmt17"})
    assert (cfg.condition_tau, cfg.lora_rank) == (0.3, 16) and sources["lora_rank"] == "command line"
    cfg, sources = TrainConfig(method="dcac"), {}
    dcac_dataset_defaults(cfg, sources, {"synth"})   # §5.2 names no value: the released base config
    assert (cfg.condition_tau, cfg.lora_rank) == (1.0, 8) and "'synth'" in sources["condition_tau"]


# ----------------------------------------------------------------------------- eqs. 9-11 by hand
def test_lora_scale_is_one_over_r_eq_9(tiny_sd):
    """Eq. 9: h' = h W + (1/r) h A B. With W = 0, A and B all ones and h all ones, every output is
    (1/r) * (sum over d_in of 1) * (sum over r of 1) = d_in, whatever r (alpha/r with alpha = r would
    give r * d_in; no scale would give r * d_in too)."""
    from reidtools.reid.dcac import load_diffusion_branch

    for r in (2, 4):
        unet = load_diffusion_branch(tiny_sd, lora_rank=r).unet
        layer = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
        d_in = layer.base_layer.in_features
        with torch.no_grad():
            layer.base_layer.weight.zero_()
            next(iter(layer.lora_A.values())).weight.fill_(1.0)
            next(iter(layer.lora_B.values())).weight.fill_(1.0)
            out = layer(torch.ones(1, d_in))
        assert torch.allclose(out, torch.full_like(out, float(d_in)))


class _EpsStub(torch.nn.Module):
    """A U-Net stand-in that, knowing F_0 = 1 and abar = 0.64, predicts eps - 0.5 from F_t = 0.8 F_0 +
    0.6 eps (eq. 10); any other mixing of F_0 and eps makes its prediction wrong."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, ft, t, encoder_hidden_states=None):
        from types import SimpleNamespace

        self.seen.append((ft.detach().clone(), t.clone()))
        return SimpleNamespace(sample=(ft - 0.8) / 0.6 - 0.5)


def test_eqs_10_11_noisy_latent_and_mse_by_hand(tiny_sd):
    """Eq. 10: F_t = sqrt(abar_t) F_0 + sqrt(1 - abar_t) eps_t; eq. 11: L_dif = E_t ||eps_t - E(F_t, c)||^2.
    With abar_t = 0.64 for every t (sqrt: 0.8 and 0.6), F_0 = 1 and a U-Net predicting eps - 0.5, every
    squared error is 0.25, so L_dif = 0.25 for any noise draw."""
    from reidtools.reid.dcac import load_diffusion_branch

    branch = load_diffusion_branch(tiny_sd, lora_rank=2)
    stub = _EpsStub()
    branch.unet = stub
    branch.alphas_cumprod = torch.full_like(branch.alphas_cumprod, 0.64)
    branch.latents = lambda x: torch.ones(x.shape[0], 4, 4, 4)
    cond = torch.zeros(3, 1, 8)
    loss = branch(torch.zeros(3, 3, 32, 32), cond, generator=torch.Generator().manual_seed(0))
    assert float(loss) == pytest.approx(0.25, abs=1e-6)
    ft, t = stub.seen[0]
    assert ft.shape == (3, 4, 4, 4) and float(ft.std()) > 0.3      # noise really was mixed in
    assert int(t.min()) >= 0 and int(t.max()) < branch.num_timesteps
