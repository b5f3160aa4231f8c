"""Reference attention (reidtools.generate.attention) on a tiny random-weight diffusers U-Net."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from reidtools.generate.attention import ReferenceAttentionControl, self_attention_names  # noqa: E402


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8).eval()


@pytest.fixture(scope="module")
def unets():
    return tiny_unet(0), tiny_unet(1)


def run(unet, x, ctx):
    with torch.no_grad():
        return unet(x, 10, encoder_hidden_states=ctx).sample


def test_empty_bank_is_plain_unet_and_reference_changes_output(unets):
    main, ref = unets
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    ctx = torch.randn(2, 3, 16, generator=g)
    ref_a, ref_b = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    plain = run(main, x, ctx)

    ctl = ReferenceAttentionControl(main, ref)
    with ctl.read():                       # nothing written yet: plain behaviour
        assert torch.allclose(run(main, x, ctx), plain, atol=1e-6)
    with ctl.write():
        run(ref, ref_a, ctx[:1])
    assert set(ctl.bank) == set(self_attention_names(ref))
    # stored features are attn1 inputs: (B, H*W, C) at each resolution (8x8 -> 64 tokens, 32 ch)
    assert ctl.bank["down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor"].shape == (1, 64, 32)
    assert torch.allclose(run(main, x, ctx), plain, atol=1e-6)   # outside read(): untouched
    with ctl.read():
        out_a = run(main, x, ctx)          # reference batch 1 repeated over main batch 2
        out_a2 = run(main, x, ctx)
    assert not torch.allclose(out_a, plain, atol=1e-4)
    assert torch.equal(out_a, out_a2)      # reading does not consume the bank
    ctl.clear()
    with ctl.write():
        run(ref, ref_b, ctx[:1])
    with ctl.read():
        out_b = run(main, x, ctx)
    assert not torch.allclose(out_a, out_b, atol=1e-4)   # depends on the reference image
    ctl.remove()
    assert torch.allclose(run(main, x, ctx), plain, atol=1e-6)
    assert not any(type(p).__name__.startswith("Reference") for p in main.attn_processors.values())


def test_read_equals_attention_over_concatenation(unets):
    """Hand check on one attention layer: output for own tokens == softmax(q_own [k_own;k_ref]^T) [v_own;v_ref]."""
    main, _ = unets
    attn = main.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor"
    ctl = ReferenceAttentionControl(main)
    g = torch.Generator().manual_seed(1)
    own, ref = torch.randn(1, 5, 32, generator=g), torch.randn(1, 7, 32, generator=g)
    ctl.store({name: ref})
    with ctl.read(), torch.no_grad():
        got = attn(own)
    ctl.remove()
    with torch.no_grad():
        both = torch.cat([own, ref], dim=1)
        full = attn(both)[:, :5]           # IDM-VTON's form: attend over the concat, keep own rows
        q = attn.to_q(own).view(1, 5, attn.heads, -1).transpose(1, 2)
        k = attn.to_k(both).view(1, 12, attn.heads, -1).transpose(1, 2)
        v = attn.to_v(both).view(1, 12, attn.heads, -1).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        manual = attn.to_out[0]((w @ v).transpose(1, 2).reshape(1, 5, -1))
    assert torch.allclose(got, full, atol=1e-5)
    assert torch.allclose(got, manual, atol=1e-5)


def test_batch_mismatch_is_an_error(unets):
    main, _ = unets
    attn = main.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    ctl = ReferenceAttentionControl(main)
    ctl.store({"down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor": torch.zeros(2, 3, 32)})
    try:
        with ctl.read(), pytest.raises(ValueError, match="does not divide"):
            attn(torch.zeros(3, 4, 32))
    finally:
        ctl.remove()


def test_zero_unconditional_gives_the_first_half_zero_reference(unets):
    main, _ = unets
    attn = main.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor"
    g = torch.Generator().manual_seed(2)
    own, ref = torch.randn(1, 4, 32, generator=g), torch.randn(1, 3, 32, generator=g)
    ctl = ReferenceAttentionControl(main)
    try:
        ctl.store({name: ref})
        ctl.zero_unconditional()
        assert ctl.bank[name].shape == (2, 3, 32) and not ctl.bank[name][0].any()
        with ctl.read(), torch.no_grad():
            out = attn(torch.cat([own, own]))
            ctl.bank[name] = torch.zeros(1, 3, 32)
            zero_ref = attn(own)
            ctl.bank[name] = ref
            with_ref = attn(own)
        assert torch.allclose(out[0], zero_ref[0], atol=1e-6) and torch.allclose(out[1], with_ref[0], atol=1e-6)
    finally:
        ctl.remove()
