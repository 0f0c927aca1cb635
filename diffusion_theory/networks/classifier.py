"""A small CNN classifier of grey-scale images: it labels generated images and gives the default FID features
(paper 1 (MTGM), Sec. 5.2: "a CNN classifier" labels the generated digits; its architecture is not given).

    x (B, C, S, S) in [-1, 1]
      -> [conv3x3 -> BatchNorm -> ReLU] x 2 -> max-pool 2      (width w; H -> floor(H/2))
      -> [conv3x3 -> BatchNorm -> ReLU] x 2 -> max-pool 2      (width 2w)
      -> flatten -> linear -> ReLU                  = features (B, feature_dim): the penultimate layer
      -> dropout -> linear                          = logits (B, K)

``class_labels`` records which labels of the data the K outputs mean, so a diagnostic can refuse a classifier
trained on other classes.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from diffusion_theory.init_config import RecordsInitArgs

__all__ = ["ImageClassifier"]


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class ImageClassifier(RecordsInitArgs, nn.Module):
    """CNN over (C, H, W) images, H, W >= 4 (each max-pool floors: 14 -> 7 -> 3).

    Args:
        input_shape: (C, S, S) of one image.
        class_labels: the data's labels of the K outputs, e.g. [0, 1, 2, 3].
        width: channels of the first stage (the second has 2 width).
        feature_dim: width of the penultimate layer (the FID features).
        dropout: dropout before the last linear layer (training only).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        class_labels: Sequence[int] = (0, 1, 2, 3),
        width: int = 32,
        feature_dim: int = 128,
        dropout: float = 0.3,
    ):
        super().__init__()
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != 3 or min(input_shape) < 1 or min(input_shape[1:]) < 4:
            raise ValueError(f"classifier.input_shape must be (C, H, W) with H, W >= 4; got {input_shape}")
        class_labels = [int(c) for c in class_labels]
        if len(class_labels) < 2 or len(set(class_labels)) != len(class_labels):
            raise ValueError(f"classifier.class_labels must hold at least 2 distinct labels; got {class_labels}")
        for name, value in (("width", width), ("feature_dim", feature_dim)):
            if value < 1:
                raise ValueError(f"classifier.{name} must be >= 1; got {value}")
        if not 0 <= dropout < 1:
            raise ValueError(f"classifier.dropout must lie in [0, 1); got {dropout}")
        self.input_shape, self.class_labels = input_shape, class_labels
        self.num_features = int(feature_dim)
        c, h, w = input_shape
        self.body = nn.Sequential(
            _conv_block(c, width),
            _conv_block(width, 2 * width),
            nn.Flatten(),
            nn.Linear(2 * width * (h // 2 // 2) * (w // 2 // 2), feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, len(class_labels)))

    @property
    def num_classes(self) -> int:
        return len(self.class_labels)

    def features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, feature_dim)
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K) logits
        return self.head(self.body(x))
