"""Feature extractors of the per-class FID (paper 1 (MTGM), Sec. 5.2): images (B, C, H, W) in [-1, 1] -> (B, F).

    ClassifierFeatures  the penultimate layer of our CNN classifier (``networks.classifier``): the default, offline
    InceptionFeatures   Inception-v3's 2048-d pool features through torch-fidelity (``inception-v3-compat``, the
                        TF-FID port): grey images are quantised to uint8 and repeated to 3 channels, resized by
                        torch-fidelity to 299 x 299. Its weights are downloaded where the network allows, or read
                        from a local file (``weights_path``); offline without one, a clear error.

Both are frozen (eval mode, no gradients) and describe themselves (``describe``: name and weights hash) so that
every FID is logged with what makes it reproducible.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor, nn

INCEPTION_URL_HINT = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)


def file_hash(path: str | Path, length: int = 16) -> str:
    """The first ``length`` hex digits of the file's SHA-256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


class ClassifierFeatures(nn.Module):
    """The classifier's penultimate layer: ``classifier.features(x)`` (B, num_features)."""

    name = "classifier-penultimate"

    def __init__(self, classifier: nn.Module, weights_hash: str = ""):
        super().__init__()
        self.classifier = classifier
        self.num_features = int(classifier.num_features)
        self.weights_hash = weights_hash

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) in [-1, 1] -> (B, F)
        return self.classifier.features(x)

    def describe(self) -> dict[str, str]:
        return {"extractor": self.name, "extractor_hash": self.weights_hash}


def to_uint8_rgb(x: Tensor) -> Tensor:
    """[-1, 1] images (B, C, H, W) -> uint8 (B, 3, H, W): round((x + 1) 127.5), grey repeated to 3 channels."""
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


class InceptionFeatures(nn.Module):
    """Inception-v3 pool features (B, 2048) through torch-fidelity.

    Args:
        weights_path: a local copy of torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``; None downloads
            it (cached by torch.hub) where the network allows.
    """

    name = "inception-v3-compat"

    def __init__(self, weights_path: str | None = None):
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        if weights_path is not None and not Path(weights_path).is_file():
            raise FileNotFoundError(
                f"inception_weights: no file {weights_path!r}; download {INCEPTION_URL_HINT} "
                f"where the network allows and pass its path"
            )
        try:
            self.net = FeatureExtractorInceptionV3(self.name, ["2048"], feature_extractor_weights_path=weights_path)
        except OSError as err:  # URLError, socket errors: no network and no local weights
            raise RuntimeError(
                f"Inception-v3 features: the weights could not be downloaded ({type(err).__name__}: "
                f"{err}). Offline, download {INCEPTION_URL_HINT} elsewhere and set inception_weights "
                f"to its path, or use the classifier's features (features: classifier)"
            ) from err
        self.num_features = 2048
        self.weights_hash = file_hash(weights_path) if weights_path is not None else "torch-fidelity-default"
        self.net.eval().requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) in [-1, 1] -> (B, 2048)
        (features,) = self.net(to_uint8_rgb(x))
        return features

    def describe(self) -> dict[str, str]:
        return {"extractor": self.name, "extractor_hash": self.weights_hash}
