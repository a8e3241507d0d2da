"""repro.gan_loop.train_gan (the one GAN loop) and repro.wgan_gp (its first loss): the loop learns,
resumes bit-identically, refuses a foreign checkpoint, writes sample grids without moving the
training stream, and the gradient penalty is Eq. 3."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from repro import ReproError
from repro.gan_loop import GANRun, train_gan
from repro.wgan_gp import PAPER, WGANGP, gradient_penalty


def _toy(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    gen = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    critic = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 1))
    return gen, critic


def _train(x: Tensor, iterations: int, *, seed: int = 0, lr: float = 1e-3, **kw: object) -> GANRun:
    gen, critic = _toy(seed)
    return train_gan(
        gen,
        critic,
        x,
        loss=WGANGP(),
        iterations=iterations,
        batch_size=64,
        n_critic=PAPER.n_critic,
        opt_g=torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.9)),
        opt_d=torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.9)),
        latent=lambda n, rng: torch.randn(n, 2, generator=rng),
        rng=torch.Generator().manual_seed(seed),
        config={"toy": 1, "lr": lr},
        progress=False,
        **kw,  # type: ignore[arg-type]
    )


def _data() -> Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2000, 2, generator=g) * 0.3 + torch.tensor([3.0, -2.0])


def test_wgan_gp_moves_the_generator_onto_the_data() -> None:
    x = _data()
    run = _train(x, 600)
    with torch.no_grad():
        before = _toy(0)[0](torch.randn(1000, 2)).mean(0)
        after = run.generator(torch.randn(1000, 2)).mean(0)
    target = x.mean(0)
    assert (after - target).norm() < 0.5 < (before - target).norm()
    assert len(run.critic_loss) == len(run.statistic) == 600
    # the Wasserstein estimate shrinks as the samples approach the data
    assert sum(run.statistic[-20:]) / 20 < sum(run.statistic[:20]) / 20
    assert not run.generator.training and not run.critic.training


def test_an_interrupted_run_resumes_bit_identically(tmp_path: Path) -> None:
    x = _data()
    whole = _train(x, 6)
    ckpt = tmp_path / "gan.pt"
    first = _train(x, 6, checkpoint=ckpt, checkpoint_every=2, stop_after=3)
    assert first.iterations == 3 and ckpt.exists()
    rest = _train(x, 6, checkpoint=ckpt, checkpoint_every=2)
    assert rest.resumed_from == 3 and rest.iterations == 6
    for a, b in zip(
        whole.generator.state_dict().values(), rest.generator.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    for a, b in zip(
        whole.critic.state_dict().values(), rest.critic.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert rest.critic_loss == whole.critic_loss and rest.statistic == whole.statistic


def test_a_checkpoint_of_other_settings_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "gan.pt"
    _train(_data(), 2, checkpoint=ckpt)
    with pytest.raises(ReproError, match="checkpoint settings"):
        _train(_data(), 4, checkpoint=ckpt, lr=2e-3)


def test_sample_grids_are_written_and_do_not_move_the_training_stream(tmp_path: Path) -> None:
    x = _data()

    def image_gen_run(samples_dir: Path | None) -> GANRun:
        torch.manual_seed(0)
        gen = nn.Sequential(nn.Linear(2, 49), nn.Sigmoid(), nn.Unflatten(1, (1, 7, 7)))
        critic = nn.Sequential(nn.Flatten(), nn.Linear(49, 1))
        imgs = x[:, :1].reshape(-1, 1, 1, 1).expand(-1, 1, 7, 7).sigmoid()
        return train_gan(
            gen, critic, imgs, loss=WGANGP(), iterations=5, batch_size=16, n_critic=1,
            opt_g=torch.optim.Adam(gen.parameters()), opt_d=torch.optim.Adam(critic.parameters()),
            latent=lambda n, rng: torch.randn(n, 2, generator=rng),
            rng=torch.Generator().manual_seed(0), samples_dir=samples_dir, samples_every=2,
            progress=False,
        )  # fmt: skip

    with_grids = image_gen_run(tmp_path / "samples")
    without = image_gen_run(None)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "iter_000002.png",
        "iter_000004.png",
        "iter_000005.png",
    ]
    for a, b in zip(
        with_grids.generator.state_dict().values(),
        without.generator.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b)


def test_the_generator_step_leaves_the_critic_alone() -> None:
    class Spy(WGANGP):
        def generator_loss(self, critic: nn.Module, fake: Tensor) -> Tensor:
            assert not any(p.requires_grad for p in critic.parameters())
            return super().generator_loss(critic, fake)

    gen, critic = _toy()
    train_gan(
        gen, critic, _data(), loss=Spy(), iterations=3, batch_size=8, n_critic=1,
        opt_g=torch.optim.SGD(gen.parameters(), lr=0.1),
        opt_d=torch.optim.SGD(critic.parameters(), lr=0.0),  # the critic must not move
        latent=lambda n, rng: torch.randn(n, 2, generator=rng), rng=torch.Generator(),
        progress=False,
    )  # fmt: skip
    assert all(p.requires_grad for p in critic.parameters())


def test_after_critic_step_runs_after_every_critic_update() -> None:
    class Clipped(WGANGP):
        def after_critic_step(self, critic: nn.Module) -> None:
            for p in critic.parameters():
                p.data.clamp_(-0.01, 0.01)

    run = _train_with(Clipped())
    assert max(float(p.detach().abs().max()) for p in run.critic.parameters()) <= 0.01


def _train_with(loss: WGANGP) -> GANRun:
    gen, critic = _toy()
    return train_gan(
        gen, critic, _data(), loss=loss, iterations=3, batch_size=8, n_critic=2,
        opt_g=torch.optim.Adam(gen.parameters()), opt_d=torch.optim.Adam(critic.parameters(), lr=1.0),
        latent=lambda n, rng: torch.randn(n, 2, generator=rng), rng=torch.Generator(),
        progress=False,
    )  # fmt: skip


def test_gradient_penalty_is_eq_3() -> None:
    """A linear critic has the same gradient everywhere: its norm decides the penalty."""
    real, fake = torch.randn(10, 1, 4, 4), torch.randn(10, 1, 4, 4)
    alpha = torch.rand(10, 1, 1, 1)
    for norm, expected in ((1.0, 0.0), (3.0, 4.0), (0.5, 0.25)):
        lin = nn.Linear(16, 1, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(1, 16))
            lin.weight.mul_(norm / lin.weight.norm())
        critic = nn.Sequential(nn.Flatten(), lin)
        assert float(gradient_penalty(critic, real, fake, alpha)) == pytest.approx(
            expected, abs=1e-5
        )


def test_bad_loop_settings_are_refused() -> None:
    gen, critic = _toy()
    with pytest.raises(ReproError, match="n_critic"):
        train_gan(
            gen, critic, _data(), loss=WGANGP(), iterations=1, batch_size=8, n_critic=0,
            opt_g=torch.optim.Adam(gen.parameters()), opt_d=torch.optim.Adam(critic.parameters()),
            latent=lambda n, rng: torch.randn(n, 2, generator=rng), rng=torch.Generator(),
        )  # fmt: skip


def test_a_critic_schedule_sets_the_steps_per_iteration() -> None:
    calls: list[int] = []

    class Counting(WGANGP):
        def after_critic_step(self, critic: nn.Module) -> None:
            calls.append(1)

    gen, critic = _toy()
    train_gan(
        gen, critic, _data(), loss=Counting(), iterations=4, batch_size=8,
        n_critic=lambda it: 3 if it < 2 else 1,
        opt_g=torch.optim.Adam(gen.parameters()), opt_d=torch.optim.Adam(critic.parameters()),
        latent=lambda n, rng: torch.randn(n, 2, generator=rng), rng=torch.Generator(),
        progress=False,
    )  # fmt: skip
    assert len(calls) == 3 + 3 + 1 + 1


def test_on_iteration_sees_every_iteration_once_in_order(tmp_path: Path) -> None:
    seen: list[int] = []
    ckpt = tmp_path / "gan.pt"
    _train(_data(), 5, checkpoint=ckpt, stop_after=2, on_iteration=seen.append)
    _train(_data(), 5, checkpoint=ckpt, on_iteration=seen.append)
    assert seen == [0, 1, 2, 3, 4]  # resumed at 2: nothing repeated, nothing skipped
