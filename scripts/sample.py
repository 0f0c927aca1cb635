#!/usr/bin/env python
"""Samples of a trained checkpoint: a tensor file and a picture (logic: ``diffusion_theory.sampling_run``).

python scripts/sample.py --ckpt runs/gp/<run>/checkpoints/last.ckpt -n 1000
python scripts/sample.py --ckpt ... -n 500 --sampler ode --steps 50 --option spacing=log --seed 1
python scripts/sample.py --ckpt ... -n 16 --classes 0,3,7 --guidance_scale 4.0      # class-conditional model
torchrun --nproc-per-node=2 scripts/sample.py --ckpt ... -n 10000                    # each process its chunks
"""

import argparse
import sys

import yaml

from diffusion_theory.sampling_run import SampleRequest, sample_checkpoint


def parse_classes(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated class indices such as 0,3,7; got {text!r}"
        ) from None


def parse_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value (a sampler argument); got {text!r}")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a checkpoint of scripts/fit.py (or any DiffusionModule)")
    parser.add_argument("-n", type=int, required=True, help="samples to draw (per class with --classes)")
    parser.add_argument("--sampler", default="auto", help="auto | ddpm | ddim (discrete) | sde | ode (continuous)")
    parser.add_argument("--steps", type=int, default=None, help="backward steps (default: the sampler's, e.g. 1000)")
    parser.add_argument("--seed", type=int, default=0, help="chunk k is drawn with the seed (seed, k)")
    parser.add_argument("--classes", type=parse_classes, default=None, help="class labels, e.g. 0,3,7")
    parser.add_argument("--guidance_scale", type=float, default=None, help="classifier-free guidance scale")
    parser.add_argument("--unconditional", action="store_true", help="sample a conditional model's null class")
    parser.add_argument(
        "--out",
        default=None,
        help="output path without suffix (default <run>/samples/<ckpt>_<sampler>_n<n>_seed<seed>)",
    )
    parser.add_argument("--chunk_size", type=int, default=256, help="samples per batch, the unit split over processes")
    parser.add_argument(
        "--option",
        type=parse_option,
        action="append",
        default=[],
        help="further sampler arguments, e.g. --option spacing=log --option method=heun",
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    request = SampleRequest(
        ckpt=args.ckpt,
        n=args.n,
        sampler=args.sampler,
        steps=args.steps,
        seed=args.seed,
        classes=args.classes,
        guidance_scale=args.guidance_scale,
        unconditional=args.unconditional,
        out=args.out,
        chunk_size=args.chunk_size,
        sampler_options=dict(args.option),
        progress=not args.no_progress,
    )
    try:
        paths = sample_checkpoint(request)
    except ValueError as error:
        print(f"sample.py: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if paths:
        for kind, path in paths.items():
            print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
