"""Generation: captions and prompt policies, diffusion inpainting, discriminator guidance."""
