"""Pose-dIVE (seed 004): pose-guided re-rendering with reference and denoising U-Nets."""
