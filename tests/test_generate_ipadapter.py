"""IDM-VTON Resampler names -> diffusers IPAdapterPlusImageProjection: keys, shapes and the function."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from reidtools.generate.tryon.ipadapter import resampler, resampler_shapes, resampler_to_diffusers  # noqa: E402

SMALL = dict(dim=32, depth=2, dim_head=8, heads=4, num_queries=5, ff_mult=4)


def idm_forward(w, x, depth, heads, dim_head):
    """IDM-VTON's Resampler.forward written out (ip_adapter/resampler.py), on an IDM-named state dict."""
    ln = torch.nn.functional.layer_norm

    def norm(t, p):
        return ln(t, t.shape[-1:], w[p + ".weight"], w[p + ".bias"])

    lat = w["latents"].repeat(x.shape[0], 1, 1)
    x = x @ w["proj_in.weight"].T + w["proj_in.bias"]
    for i in range(depth):
        a = f"layers.{i}.0."
        xn, ln_ = norm(x, a + "norm1"), norm(lat, a + "norm2")
        b, n, _ = ln_.shape
        q = ln_ @ w[a + "to_q.weight"].T
        k, v = (torch.cat([xn, ln_], 1) @ w[a + "to_kv.weight"].T).chunk(2, dim=-1)
        split = lambda t: t.view(b, t.shape[1], heads, dim_head).transpose(1, 2)  # noqa: E731
        s = 1 / math.sqrt(math.sqrt(dim_head))
        att = torch.softmax((split(q) * s) @ (split(k) * s).transpose(-1, -2), dim=-1) @ split(v)
        lat = att.transpose(1, 2).reshape(b, n, -1) @ w[a + "to_out.weight"].T + lat
        f = f"layers.{i}.1."
        h = torch.nn.functional.gelu(norm(lat, f + "0") @ w[f + "1.weight"].T)
        lat = h @ w[f + "3.weight"].T + lat
    return norm(lat @ w["proj_out.weight"].T + w["proj_out.bias"], "norm_out")


def test_converted_idm_weights_give_idm_output():
    shapes = resampler_shapes(24, 16, **SMALL)
    g = torch.Generator().manual_seed(0)
    w = {k: torch.randn(s, generator=g) * 0.2 for k, s in shapes.items()}
    module = resampler(24, 16, **SMALL).eval()
    missing, unexpected = module.load_state_dict(resampler_to_diffusers(w), strict=True)
    assert not missing and not unexpected
    x = torch.randn(2, 7, 24, generator=g)
    with torch.no_grad():
        assert torch.allclose(module(x), idm_forward(w, x, SMALL["depth"], SMALL["heads"], SMALL["dim_head"]), atol=1e-4)


def test_full_size_idm_resampler_names_and_shapes():
    """IDM-VTON: embedding_dim = encoder_hid_dim = 1280 (CLIP ViT-H/14 hidden size, ckpt/image_encoder/config.json),
    output_dim = SDXL cross_attention_dim 2048; 7 + 11 * 4 = 51 keys."""
    from accelerate import init_empty_weights

    shapes = resampler_shapes(1280, 2048)
    assert len(shapes) == 51 and shapes["layers.3.0.to_kv.weight"] == (2560, 1280)
    with init_empty_weights():
        module = resampler(1280, 2048)
    own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    converted = resampler_to_diffusers({k: torch.empty(s, device="meta") for k, s in shapes.items()})
    assert {k: tuple(v.shape) for k, v in converted.items()} == own
    with pytest.raises(KeyError):
        resampler_to_diffusers({"layers.0.2.weight": torch.zeros(1)})


def _tiny_sdxl_like_unet():
    import diffusers

    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=13, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=24, attention_head_dim=4, norm_num_groups=8).eval()


def test_decoupled_ip_attention_hand_check_and_key_names():
    from reidtools.generate.tryon.ipadapter import install_ip_attention

    unet = _tiny_sdxl_like_unet()
    install_ip_attention(unet, num_tokens=3, scale=0.7)
    keys = {k: tuple(v.shape) for k, v in unet.state_dict().items() if "_ip" in k}
    # hidden size from the block's out channels (down 1 -> 32; up 0 = reversed(block_out)[0] -> 32), input = cross dim 24
    assert keys["down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_ip.weight"] == (32, 24)
    assert keys["up_blocks.0.attentions.1.transformer_blocks.0.attn2.processor.to_v_ip.weight"] == (32, 24)
    assert len(keys) == 2 * (1 + 2 + 1)     # down 1 (1 layer), up 0 (2 layers), mid (1)
    attn = unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2
    proc = attn.processor
    g = torch.Generator().manual_seed(1)
    h, text, img = torch.randn(2, 5, 32, generator=g), torch.randn(2, 4, 24, generator=g), torch.randn(2, 3, 24, generator=g)
    with torch.no_grad():
        got = attn(h, encoder_hidden_states=torch.cat([text, img], 1))

        def mha(q, k, v):   # plain multi-head softmax attention, 8 heads of 4
            sp = lambda t: t.view(2, -1, attn.heads, 32 // attn.heads).transpose(1, 2)  # noqa: E731
            w = torch.softmax(sp(q) @ sp(k).transpose(-1, -2) / (32 // attn.heads) ** 0.5, -1)
            return (w @ sp(v)).transpose(1, 2).reshape(2, -1, 32)

        q = attn.to_q(h)
        want = attn.to_out[0](mha(q, attn.to_k(text), attn.to_v(text)) + 0.7 * mha(q, proc.to_k_ip(img), proc.to_v_ip(img)))
    assert torch.allclose(got, want, atol=1e-5)
