"""The trainable parts DiVE adds to Stable Diffusion 1.5: identity-token embedding rows
(textual inversion) on a frozen text encoder, and the base components they attach to."""

from __future__ import annotations

from reidtools.errors import ReidError


class PlaceholderRows:
    """The trainable rows of the new identity tokens.

    The text encoder's embedding matrix stays frozen; a forward hook on it substitutes these rows
    wherever a new token id appears, so only they receive gradients (and optimizer state): the
    other rows cannot change. `write_into` copies them into the matrix for saving and sampling.
    """

    def __init__(self, embedding, first_id: int, init):
        import torch

        self.first_id = first_id
        self.weight = torch.nn.Parameter(init.detach().clone().float())
        self.handle = embedding.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        ids = args[0]
        sel = ids >= self.first_id
        if not bool(sel.any()):
            return output
        out = output.clone()
        out[sel] = self.weight[ids[sel] - self.first_id].to(out.dtype)
        return out

    def write_into(self, embedding) -> None:
        import torch

        with torch.no_grad():
            embedding.weight[self.first_id:self.first_id + len(self.weight)] = self.weight.to(embedding.weight.dtype)


def load_base(base: str):
    """Tokenizer, text encoder, VAE, U-Net and the training noise scheduler of a SD-1.x folder/id."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from reidtools.hub import resolve_model

    path = resolve_model(base, subfolder="unet")
    try:
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder")
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae")
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet")
        noise = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    except (OSError, ValueError) as exc:
        raise ReidError(f"--base {base}: not a Stable Diffusion folder ({str(exc).splitlines()[0]})") from None
    return tokenizer, text_encoder, vae, unet, noise


def add_id_tokens(tokenizer, text_encoder, tokens: list[str], init_token: str):
    """Add `tokens` to the tokenizer and embedding matrix, initialised to `init_token`'s embedding
    (the mean over its pieces if the tokenizer splits it). Returns the first new token id."""
    import torch

    added = tokenizer.add_tokens(tokens)
    if added != len(tokens):
        raise ReidError("some identity tokens already exist in the base tokenizer")
    first = tokenizer.convert_tokens_to_ids(tokens[0])
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    emb = text_encoder.get_input_embeddings()
    init_ids = tokenizer.encode(init_token, add_special_tokens=False)
    if not init_ids:
        raise ReidError(f"--init-token {init_token!r} encodes to no token")
    with torch.no_grad():
        emb.weight[first:] = emb.weight[init_ids].mean(0)
    return first


class LoraPartition:
    """DiVE's one LoRA with a portion per camera/modality code (seed 002 §3: "we train one LoRA module
    for our two modalities, with each placeholder token activating its corresponding portion of the
    LoRA parameters").

    The rank dimension of every LoRA branch (lora_A's outputs) is split into contiguous blocks, one per
    code; a sample's code keeps its block and masks the others, so ΔW_k = B[:, block_k] A[block_k, :]
    and only block k of A and B gets a gradient from an image of code k. Under classifier-free
    guidance the pipeline doubles the batch ([uncond; cond]); the mask repeats to match. The saved
    LoRA file is an ordinary diffusers LoRA; sampling one code through diffusers alone would sum every
    portion, so `reid invert sample` applies the same mask.
    """

    def __init__(self, unet, keys: list[str], rank: int):
        if rank < len(keys):
            raise ReidError(f"--rank {rank} cannot give each of {len(keys)} camera codes its own portion "
                            "(raise --rank or use --lora-mode shared)")
        bounds = [round(i * rank / len(keys)) for i in range(len(keys) + 1)]
        self.ranges = {k: (bounds[i], bounds[i + 1]) for i, k in enumerate(sorted(keys))}
        self.rank = rank
        self.mask = None
        self.handles = [lin.register_forward_hook(self._hook) for m in unet.modules()
                        if hasattr(m, "lora_A") and hasattr(m.lora_A, "values") for lin in m.lora_A.values()]
        if not self.handles:
            raise ReidError("the U-Net has no LoRA branches to partition")

    def select(self, keys: list[str]) -> None:
        """Masks for the next forward passes: row i keeps the block of keys[i]."""
        import torch

        mask = torch.zeros(len(keys), self.rank)
        for i, k in enumerate(keys):
            a, b = self.ranges[k]
            mask[i, a:b] = 1.0
        self.mask = mask

    def _hook(self, module, args, out):
        if self.mask is None:
            return out
        m = self.mask.to(out.device, out.dtype)
        if out.shape[0] != m.shape[0]:
            m = m.repeat(out.shape[0] // m.shape[0], 1)
        return out * m.view(out.shape[0], *([1] * (out.ndim - 2)), self.rank)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.mask = None
