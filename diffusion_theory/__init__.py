"""diffusion_theory: experiments that check theory papers on diffusion transformers."""

__version__ = "0.1.0"
