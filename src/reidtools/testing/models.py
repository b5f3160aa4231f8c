"""Random-weight models built from configs, for tests, the demo and benchmarks.

They are saved with `save_pretrained` and loaded back through the same `--model FOLDER` path as real
weights. Nothing is downloaded: the CLIP tokenizer is built from a character-level vocabulary written
next to the model.
"""

from __future__ import annotations

import json
import os
import string
import tempfile

SD15_UNET = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
                 attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
TINY_UNET = dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, attention_head_dim=4,
                 norm_num_groups=8,
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))


def write_clip_tokenizer(folder: str, max_length: int = 77, words: tuple[str, ...] = ()):
    """A CLIPTokenizer (vocab.json + merges.txt) that needs no download: character-level, plus one
    token per word of `words` (BPE merges built so each of them is a single token, as the real CLIP
    vocabulary has for common words). A tiny text encoder learns "red" far faster as one token
    than as a spelling; prompts of other words fall back to characters."""
    from transformers import CLIPTokenizer

    os.makedirs(folder, exist_ok=True)
    chars = string.ascii_lowercase + string.digits + string.punctuation
    tokens = ["<|startoftext|>", "<|endoftext|>"] + list(chars) + [c + "</w>" for c in chars]
    merges = word_merges(sorted({w.lower() for w in words}))
    tokens += [a + b for a, b in merges]
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as fh:
        json.dump({t: i for i, t in enumerate(tokens)}, fh)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as fh:
        fh.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tok = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"),
                        model_max_length=max_length, pad_token="<|endoftext|>")
    tok.save_pretrained(folder)
    return tok


def _bpe(word: str, ranks: dict) -> list[str]:
    """CLIP's BPE of one word: characters, the last with '</w>', merged lowest rank first."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), len(ranks) + 1), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank > len(ranks):
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def word_merges(words) -> list[tuple[str, str]]:
    """Merges, in rank order, after which every word in `words` is one BPE token. A new merge joins the
    first two pieces of a word still in pieces; appended last, it cannot split a finished word."""
    merges: list[tuple[str, str]] = []
    ranks: dict = {}
    for word in words:
        while len(parts := _bpe(word, ranks)) > 1:
            pair = (parts[0], parts[1])
            ranks[pair] = len(merges)
            merges.append(pair)
    return merges


SD15_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
SD15_VAE = (128, 256, 512, 512)


def make_inpaint_pipeline(*, unet: dict | None = None, text: dict | None = None,
                          vae_channels: tuple[int, ...] = (16, 32), seed: int = 0, words: tuple[str, ...] = ()):
    """A random-weight StableDiffusionInpaintPipeline (9-channel U-Net) in memory.

    `unet` overrides the U-Net config (default TINY_UNET; SD15_UNET gives SD-1.5 sizes), `text` the
    CLIP text config (SD15_TEXT: ViT-L/14's text tower). The VAE downsamples by
    2**(len(vae_channels)-1): 2 with the default (16, 32), SD's 8 with SD15_VAE. `words` get one
    token each (write_clip_tokenizer).
    """
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    ucfg = dict(TINY_UNET if unet is None else unet)
    tcfg = dict(text or dict(hidden_size=ucfg["cross_attention_dim"], intermediate_size=2 * ucfg["cross_attention_dim"],
                             num_hidden_layers=2, num_attention_heads=2))
    unet_model = UNet2DConditionModel(sample_size=32, in_channels=9, out_channels=4, **ucfg)
    groups = 8 if min(vae_channels) < 32 else 32
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                        block_out_channels=vae_channels, layers_per_block=1 if groups == 8 else 2,
                        norm_num_groups=groups,
                        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
                        up_block_types=("UpDecoderBlock2D",) * len(vae_channels))
    with tempfile.TemporaryDirectory() as tok_dir:
        tokenizer = write_clip_tokenizer(tok_dir, words=words)
    text_model = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=77,
                                              bos_token_id=0, eos_token_id=1, pad_token_id=1, **tcfg))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    return StableDiffusionInpaintPipeline(vae=vae, text_encoder=text_model, tokenizer=tokenizer, unet=unet_model,
                                          scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)


def build_inpaint_pipeline(folder: str, **kwargs):
    """`make_inpaint_pipeline(**kwargs)` saved with `save_pretrained` (safetensors) to `folder`."""
    pipe = make_inpaint_pipeline(**kwargs)
    pipe.save_pretrained(folder, safe_serialization=True)
    return pipe


SIMPLE_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'].upper() }}: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{{ '\\n' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}{{ '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def word_tokenizer(words: list[str] | None = None):
    """A word-level fast tokenizer (<s>, </s>, <pad>, <unk>, <image> + `words`), built in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = words or ("user assistant system what clothes is the person wearing ? : . , extract clothing items "
                      "from following text a an red blue green black white shirt jeans pants skirt shoes "
                      "coat jacket dress striped plain top and with in of").split()
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(words) | {"USER", "ASSISTANT", "SYSTEM", "\n"}))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")   # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    fast.chat_template = SIMPLE_CHAT_TEMPLATE
    return fast


def build_chat_lm(folder: str, seed: int = 0):
    """A random-weight Llama causal LM + word tokenizer with a chat template, saved to `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = word_tokenizer()
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                         pad_token_id=tok.pad_token_id))
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return model, tok


def build_llava(folder: str, seed: int = 0, image_size: int = 32, patch_size: int = 8):
    """A random-weight LLaVA (tiny CLIP vision tower + tiny Llama) and its processor, saved to `folder`."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    torch.manual_seed(seed)
    tok = word_tokenizer()
    image_token = tok.convert_tokens_to_ids("<image>")
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=image_size, patch_size=patch_size, projection_dim=32)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                      vision_feature_select_strategy="default", vision_feature_layer=-2,
                      pad_token_id=tok.pad_token_id)
    model = LlavaForConditionalGeneration(cfg)
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch_size,
                               vision_feature_select_strategy="default", chat_template=SIMPLE_CHAT_TEMPLATE,
                               num_additional_image_tokens=1)
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return model, processor
