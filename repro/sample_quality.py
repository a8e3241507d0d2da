"""Sample quality of generative models without downloads: FID and Inception Score on the features
of a Fashion-MNIST classifier of our own.

The standard FID and IS use an ImageNet Inception-v3 whose weights must be downloaded; no machine
here can. The GAN papers' Fashion-MNIST analogues therefore measure with the same formulas
(torchmetrics' `FrechetInceptionDistance` and `InceptionScore`, given a custom feature network)
on a small CNN trained by the toolkit on the Fashion-MNIST training split: its 128-dimensional
penultimate layer for FID, its logits for IS. The numbers are named for what they are — "FID
(F-MNIST classifier features)" — and are never presented as, or compared with, Inception numbers.

The network is trained once per setting and kept in the toolkit's model cache
(`repro.model_cache`: `cache_dir()/models/`, the SHA-256 of its weights beside it; a file whose
checksum differs is refused, retrained only when the user deletes it); every run records the
checksum, so two numbers are comparable only when their extractors' checksums agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from repro import ReproError
from repro.data import ChecksumMismatch, load_dataset

__all__ = [
    "LABEL",
    "FeatureExtractor",
    "FeatureNet",
    "fid",
    "fmnist_feature_net",
    "inception_score",
]

#: How the metric is named wherever it is shown.
LABEL = "F-MNIST classifier features"
_VERSION = 1  # bump when FeatureNet or its training changes: old cache files are then not reused
#: The extractor of record, shipped with the code: the default settings (all 60,000 training
#: images, 3 epochs, seed 0) trained once (CPU, torch 2.15, 86.25 % test accuracy). Retraining
#: with the same settings on another machine or thread count gives other bits, so FID numbers
#: would not be comparable across runs; every run at the default settings loads this file.
PINNED = Path(__file__).parent / "assets" / "fmnist-features-v1.pt"
PINNED_SHA256 = "25e01477b0f83f31178da724739e4bdd6b241dde180e6e42ac694e457351dd82"
PINNED_TEST_ACCURACY = 0.862500011920929


class FeatureNet(nn.Module):
    """A small CNN classifier of 1-channel images of any size ≥ 16 px (28 px, or 32 px padded):
    `features` is its 128-d penultimate layer, `forward` its 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(128, 10)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class _Features(nn.Module):
    """The penultimate layer as a module (what torchmetrics' FID calls)."""

    def __init__(self, net: FeatureNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8:  # torchmetrics sizes the features with a uint8 dummy image
            x = x.float() / 255.0
        return self.net.features(x)


@dataclass(frozen=True)
class FeatureExtractor:
    """A trained `FeatureNet`, the SHA-256 of its weights file, and its test accuracy."""

    net: FeatureNet
    sha256: str
    test_accuracy: float
    path: Path

    def provenance(self) -> dict[str, object]:
        """What a run records about the extractor its FID/IS numbers depend on."""
        return {"extractor": LABEL, "sha256": self.sha256, "test_accuracy": self.test_accuracy,
                "version": _VERSION}  # fmt: skip


def fmnist_feature_net(
    *,
    device: str | torch.device = "cpu",
    data_dir: str | os.PathLike[str] | None = None,
    n_train: int = 0,
    epochs: int = 3,
    seed: int = 0,
    progress: bool = True,
) -> FeatureExtractor:
    """The Fashion-MNIST feature network: loaded from the toolkit's model cache when it is there
    (checksum verified, `repro.model_cache`), else trained by `repro.train.train_classifier`
    (Adam 1e-3, batch 128, `epochs` over the first `n_train` training images, 0 = all 60,000)
    and stored with its checksum.

    Raises `ChecksumMismatch` when a cached file does not match its recorded checksum.
    """
    from repro.model_cache import cached, sha256_of
    from repro.train import accuracy, train_classifier

    if (n_train, epochs, seed) == (0, 3, 0) and PINNED.exists():
        digest = sha256_of(PINNED)
        if digest != PINNED_SHA256:
            raise ChecksumMismatch(
                f"{PINNED}: SHA-256 {digest[:12]}… is not the extractor of record "
                f"({PINNED_SHA256[:12]}…); restore the file from git"
            )
        net = FeatureNet()
        net.load_state_dict(torch.load(PINNED, map_location="cpu", weights_only=True))
        return FeatureExtractor(net.to(device).eval(), digest, PINNED_TEST_ACCURACY, PINNED)

    def train(net: nn.Module) -> dict[str, float]:
        tr = load_dataset("fashion_mnist", "train", data_dir=data_dir, device=device)
        te = load_dataset("fashion_mnist", "test", data_dir=data_dir, device=device)
        x, y = (tr.x, tr.y) if n_train <= 0 else (tr.x[:n_train], tr.y[:n_train])
        torch.manual_seed(seed)
        net.load_state_dict(FeatureNet().state_dict())  # the seeded initialisation
        train_classifier(
            net, x, y, epochs=epochs, batch_size=128, lr=1e-3,
            generator=torch.Generator().manual_seed(seed),
            desc="F-MNIST feature network", progress=progress,
        )  # fmt: skip
        return {"test_accuracy": accuracy(net, te.x, te.y)}

    settings = {"version": _VERSION, "n_train": n_train, "epochs": epochs, "seed": seed}
    model = cached("fmnist-features", settings, FeatureNet, train, device=device)
    net = model.net
    assert isinstance(net, FeatureNet)
    return FeatureExtractor(net, model.sha256, float(model.meta["test_accuracy"]), model.path)


def _batches(x: Tensor, batch_size: int) -> list[Tensor]:
    return [x[i : i + batch_size] for i in range(0, x.shape[0], batch_size)]


def _check(images: Tensor, what: str) -> None:
    if images.dim() != 4 or images.shape[1] != 1:
        raise ReproError(
            f"{what}: expected 1-channel images (N, 1, H, W), got {tuple(images.shape)}"
        )
    if images.shape[0] < 2:
        raise ReproError(f"{what}: at least 2 images are needed, got {images.shape[0]}")


class FIDReference:
    """FID against one fixed set of real images, whose features are computed once.

    A training curve compares many sample sets with the same real images; torchmetrics keeps the
    real statistics across `reset()` when `reset_real_features=False`, so only the fakes are
    embedded per call. `FIDReference(real, extractor)(fake)` equals `fid(real, fake, extractor)`.
    """

    def __init__(self, real: Tensor, extractor: FeatureExtractor, *, batch_size: int = 500) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        _check(real, "fid real")
        self.batch_size = batch_size
        self.device = next(extractor.net.parameters()).device
        self.metric = FrechetInceptionDistance(
            feature=_Features(extractor.net),
            input_img_size=tuple(real.shape[1:]),
            reset_real_features=False,
        ).to(self.device)
        with torch.no_grad():
            for xb in _batches(real, batch_size):
                self.metric.update(xb.to(self.device), real=True)

    @torch.no_grad()
    def __call__(self, fake: Tensor) -> float:
        _check(fake, "fid fake")
        self.metric.reset()  # the fakes only: the real statistics stay
        for xb in _batches(fake, self.batch_size):
            self.metric.update(xb.to(self.device), real=False)
        return float(self.metric.compute())


def fid(real: Tensor, fake: Tensor, extractor: FeatureExtractor, *, batch_size: int = 500) -> float:
    """Fréchet distance between the Gaussians fitted to the extractor's features of `real` and of
    `fake` (images in [0, 1], N × 1 × H × W): "FID (F-MNIST classifier features)". For many
    sample sets against the same real images, `FIDReference` embeds the real ones once."""
    return FIDReference(real, extractor, batch_size=batch_size)(fake)


@torch.no_grad()
def inception_score(
    fake: Tensor,
    extractor: FeatureExtractor,
    *,
    splits: int = 10,
    batch_size: int = 500,
    seed: int = 0,
) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) ‖ p(y))) with the extractor's class probabilities, mean and standard
    deviation over `splits` splits (Salimans et al.'s protocol): "IS (F-MNIST classifier)".
    Between 1 (every image the same class distribution) and 10 (confident and balanced).

    torchmetrics shuffles the images into splits with the global random stream; that draw is
    made under `seed` inside `torch.random.fork_rng`, so the score repeats and the caller's
    stream does not move.
    """
    import warnings

    from torchmetrics.image.inception import InceptionScore

    _check(fake, "inception_score")
    device = next(extractor.net.parameters()).device
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        metric = InceptionScore(feature=extractor.net, splits=splits).to(device)
    for xb in _batches(fake, batch_size):
        metric.update(xb.to(device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)
