"""Clothing-region inpainting (DLCR stage 1, HSGL coarse) and DLCR's discriminator guidance."""
