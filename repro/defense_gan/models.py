"""Defense-GAN networks: the WGAN-GP generator and critic, and classifiers A-F.

Paper: Samangouei, Kabkab & Chellappa, "Defense-GAN: Protecting Classifiers Against Adversarial
Attacks Using Generative Models", ICLR 2018, https://arxiv.org/abs/1805.06605 (v2) — Tables 5-6
(Appendix, p. 14) and the released code, kabkabm/defensegan (`models/dataset_models.py`,
`utils/network_builder.py`).

Map:
- the GAN of Table 6 as the released code builds it (`mnist_generator` / `mnist_discriminator`,
  latent 128, width NET_DIM = 64) -> `Generator`, `Critic` (width `dim` in `Generator`).
- classifiers A-F of Tables 5-6 (the code's `model_a` ... `model_f`; "E" is the black-box
  substitute, an MLP, "B" the other substitute), logits out (the code's final Softmax is folded
  into the loss) -> `classifier` with `CLASSIFIERS`, the code's dropout in `_dropout` and its
  unit-norm initialisation in `_unit_norm_init`.
- the projection's initial z ~ N(0, 1/k) (Section 3.2) -> `latent_std`.

Decisions where the paper's tables and the released code differ (the code produced the numbers, so
the code wins; README.md "Deviations" repeats this):
- GAN (paper Table 6): the paper prints stride-1 transposed convolutions 256-128-1 and a sigmoid on
  the critic. Stride 1 cannot grow 4x4 to 28x28 and a sigmoid critic is not a WGAN critic, so the
  table is a simplification; we use the code: 4*4*4*dim linear, three stride-2 5x5 transposed
  convolutions 4dim->2dim (cropped 8x8->7x7), 2dim->dim, dim->1, sigmoid output; the critic is three
  stride-2 5x5 convolutions dim, 2dim, 4dim with LeakyReLU(0.2) and a linear output without sigmoid.
- Model C: the paper's second convolution is 3x3, the code's is 5x5. We use 5x5.
- Model D: the paper has a second Dropout(0.5) before the output layer; the code has one. We use one.
- Dropout: the code calls TF1 `tf.nn.dropout(x, p)` whose second argument is the *keep*
  probability, so "Dropout(0.25)" keeps 25 % of the units. We reproduce that by default
  (`dropout="keep"`: PyTorch drop rate 1 - p). The evidence that the published numbers came from
  keep-probability dropout is Model B: its first layer is "Dropout(0.2)" on the input pixels, and
  its clean accuracy in the paper (0.962 MNIST, 0.747 Fashion-MNIST, far below models A, C, D) is what
  training on images with 80 % of the pixels zeroed gives. `dropout="drop"` gives the Keras reading.
- Initialisation: the classifiers use the code's unit-norm Gaussian kernels (one unit-norm vector
  per output unit) and zero biases; the GAN uses He-style initialisation as tflib does.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

LATENT_DIM = 128
DropoutMode = Literal["keep", "drop"]
CLASSIFIERS = ("A", "B", "C", "D", "E", "F")


class Generator(nn.Module):
    """G: R^latent -> [0,1]^{1x28x28} (the code's `mnist_generator`, no batch norm)."""

    def __init__(self, dim: int = 64, latent_dim: int = LATENT_DIM) -> None:
        super().__init__()
        self.dim = dim
        self.latent_dim = latent_dim
        self.fc = nn.Linear(latent_dim, 4 * 4 * 4 * dim)
        # TF "SAME" stride-2 deconvolution doubles the size: padding 2, output_padding 1 for k=5.
        self.up1 = nn.ConvTranspose2d(4 * dim, 2 * dim, 5, stride=2, padding=2, output_padding=1)
        self.up2 = nn.ConvTranspose2d(2 * dim, dim, 5, stride=2, padding=2, output_padding=1)
        self.up3 = nn.ConvTranspose2d(dim, 1, 5, stride=2, padding=2, output_padding=1)
        for layer in (self.fc, self.up1, self.up2, self.up3):
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, z: Tensor) -> Tensor:
        h = torch.relu(self.fc(z)).view(-1, 4 * self.dim, 4, 4)
        h = torch.relu(self.up1(h))[:, :, :7, :7]  # 8x8 -> 7x7, as the code crops
        h = torch.relu(self.up2(h))  # 14x14
        return torch.sigmoid(self.up3(h))  # 28x28


class Critic(nn.Module):
    """WGAN critic (the code's `mnist_discriminator`): a real-valued score, no sigmoid."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.dim = dim
        self.conv1 = nn.Conv2d(1, dim, 5, stride=2, padding=2)  # 14x14
        self.conv2 = nn.Conv2d(dim, 2 * dim, 5, stride=2, padding=2)  # 7x7
        self.conv3 = nn.Conv2d(2 * dim, 4 * dim, 5, stride=2, padding=2)  # 4x4
        self.fc = nn.Linear(4 * 4 * 4 * dim, 1)
        for layer in (self.conv1, self.conv2, self.conv3, self.fc):
            nn.init.kaiming_uniform_(layer.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = nn.functional.leaky_relu(self.conv1(x), 0.2)
        h = nn.functional.leaky_relu(self.conv2(h), 0.2)
        h = nn.functional.leaky_relu(self.conv3(h), 0.2)
        return self.fc(h.flatten(1)).squeeze(1)


def _unit_norm_init(module: nn.Module) -> None:
    """The code's classifier init: N(0,1) kernels scaled to unit L2 norm per output unit."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            with torch.no_grad():
                w = torch.randn_like(m.weight)
                norms = w.flatten(1).norm(dim=1).clamp_min(1e-7)
                m.weight.copy_(w / norms.view(-1, *([1] * (w.dim() - 1))))
                m.bias.zero_()


def _dropout(p_code: float, mode: DropoutMode) -> nn.Dropout:
    """`Dropout(p)` of the code: p is a keep probability (mode "keep") or a drop rate ("drop")."""
    if not 0.0 < p_code < 1.0:
        raise ValueError(f"dropout argument must be in (0, 1), got {p_code}")
    return nn.Dropout(1.0 - p_code if mode == "keep" else p_code)


def classifier(name: str, *, dropout: DropoutMode = "keep", filters: int = 64) -> nn.Sequential:
    """Classifier `name` in A-F of the released code (`utils/network_builder.py`), logits out.

    `filters` is the code's `nb_filters` (64); a smaller value gives a narrower network of the same
    shape (used only where a scale says so).
    """
    f = filters
    d = dropout
    if name == "A":
        layers: list[nn.Module] = [
            nn.Conv2d(1, f, 5, padding=2), nn.ReLU(),
            nn.Conv2d(f, f, 5, stride=2), nn.ReLU(),  # 12x12
            nn.Flatten(), _dropout(0.25, d),
            nn.Linear(f * 12 * 12, 128), nn.ReLU(), _dropout(0.5, d),
            nn.Linear(128, 10),
        ]  # fmt: skip
    elif name in ("B", "F"):
        layers = [_dropout(0.2, d)] if name == "B" else []
        layers += [
            nn.Conv2d(1, f, 8, stride=2, padding=3), nn.ReLU(),  # 14x14 (TF SAME)
            nn.Conv2d(f, 2 * f, 6, stride=2), nn.ReLU(),  # 5x5
            nn.Conv2d(2 * f, 2 * f, 5), nn.ReLU(),  # 1x1
        ]  # fmt: skip
        if name == "B":
            layers.append(_dropout(0.5, d))
        layers += [nn.Flatten(), nn.Linear(2 * f, 10)]
    elif name == "C":
        layers = [
            nn.Conv2d(1, 2 * f, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * f, f, 5, stride=2), nn.ReLU(),  # 12x12 (code: 5x5; paper: 3x3)
            nn.Flatten(), _dropout(0.25, d),
            nn.Linear(f * 12 * 12, 128), nn.ReLU(), _dropout(0.5, d),
            nn.Linear(128, 10),
        ]  # fmt: skip
    elif name in ("D", "E"):
        layers = [nn.Flatten(), nn.Linear(784, 200), nn.ReLU()]
        if name == "D":
            layers.append(_dropout(0.5, d))  # the code's only dropout in D
        layers += [nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10)]
    else:
        raise ValueError(f"unknown classifier {name!r}; expected one of {', '.join(CLASSIFIERS)}")
    model = nn.Sequential(*layers)
    _unit_norm_init(model)
    return model


def parameter_count(module: nn.Module) -> int:
    """Number of parameters (for the README's table and sanity checks)."""
    return sum(p.numel() for p in module.parameters())


def latent_std(latent_dim: int = LATENT_DIM) -> float:
    """Std of the projection's initial z: the code draws z ~ N(0, 1/latent_dim)."""
    return math.sqrt(1.0 / latent_dim)
