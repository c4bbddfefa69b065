"""Synthetic images of a concept: embedding-conditioned latent diffusion with LCM few-step sampling."""
