# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
scale = "smoke"  # smoke | small | full (the runner resolves auto)
device = "cpu"
seed = 0
data_dir = None
out_dir = "."

# %% [markdown]
# # Regularizing Neural Networks via Adversarial Model Perturbation (Zheng, Zhang & Mao, CVPR 2021)
#
# Paper: https://arxiv.org/abs/2010.04925. AMP minimises the *AMP loss*
# $\mathcal{L}_\mathrm{AMP}(\theta) = \max_{\|\Delta\| \le \epsilon}
# \mathcal{L}_\mathrm{ERM}(\theta + \Delta)$, the empirical risk under the worst norm-bounded
# perturbation of the **weights** (per parameter tensor in the official code), found by
# `inner_iter` gradient-ascent steps of size `inner_lr` projected on the ball; the outer step takes
# the gradient at $\theta + \Delta$, restores $\theta$ and steps SGD. It is a regulariser (flat
# minima, better test error), not a defense against adversarial inputs.
#
# The paper's numbers (SVHN, CIFAR-10, CIFAR-100; PreActResNet18, VGG16, WideResNet-28-10,
# PyramidNet-164-270) cannot run here: their rows are not run. The comparison of its benchmarks
# table runs on a **low-data Fashion-MNIST analogue** (rows `fm_*`): ERM, dropout, label
# smoothing, mixup and AMP train the same small CNN from the same initialisation and batch order
# for each seed; test error and test NLL on the test split, means over seeds, the difference
# AMP - ERM with an interval over seeds and one over test images, and each method's time per
# epoch.

# %%
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from repro import ReproError
from repro.amp import (
    METHODS,
    Settings,
    per_image_scores,
    seed_interval,
    seeds_image_interval,
    train_method,
)
from repro.baselines import BaselineSpec, baseline
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path, scale_params
from repro.data import available, load_dataset
from repro.env import fork_generator, pick_device, seed_everything
from repro.record import Recorder, read_results
from repro.stats import interval_metrics, pack_bits

SLUG = "amp"
P = scale_params(SLUG, scale)
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
print(f"scale={scale} device={dev} params={P}")
S = Settings(
    epochs=P["epochs"], batch_size=P["batch_size"], lr=P["lr"], weight_decay=P["weight_decay"],
    clip_norm=P["clip_norm"], width=P["width"], epsilon=P["epsilon"], inner_lr=P["inner_lr"],
    inner_iter=P["inner_iter"], dropout=P["dropout"], smoothing=P["smoothing"],
    mixup_alpha=P["mixup_alpha"],
)  # fmt: skip
LABEL = {"erm": "ERM", "dropout": "dropout", "label_smoothing": "label smoothing",
         "mixup": "mixup", "amp": "AMP"}  # fmt: skip
for key in ("epsilon", "inner_lr", "inner_iter", "seeds", "epochs", "width", "lr"):
    rec.metric(key, P[key])

# %% [markdown]
# ## Data
#
# The first `n_train` Fashion-MNIST training images (a low-data regime: the regularisers have
# something to do) and the first `n_test` test images (0: all 10,000).

# %%
DS = "fashion_mnist"
if not available(DS, data_dir):
    raise ReproError("Fashion-MNIST is not here: apt-get install dataset-fashion-mnist")
train = load_dataset(DS, "train", data_dir=data_dir, device=dev)
test = load_dataset(DS, "test", data_dir=data_dir, device=dev)
x_tr, y_tr = train.x[: P["n_train"]], train.y[: P["n_train"]]
n_test = P["n_test"] or len(test)
x_te, y_te = test.x[:n_test], test.y[:n_test]
rec.metric("n_train", len(y_tr))
rec.metric("n_test", len(y_te))
print(f"{len(y_tr)} training images, {len(y_te)} test images")

# %% [markdown]
# ## The five methods, seed by seed
#
# For each seed: the same initialisation of `SmallCNN`, the same batch order, the same SGD
# recipe (Nesterov momentum 0.9, weight decay, lr x0.1 at 50 % and 75 % of the epochs,
# gradient-norm clip 50), each method driven by `repro.amp.AMP` (`inner_iter = 0` for all but
# AMP: a plain SGD step). Methods are interleaved within a seed so that the time per epoch of
# each is measured under the same load.

# %%
SEEDS = [fork_generator(gen).initial_seed() for _ in range(P["seeds"])]
WRONG = {m: [] for m in METHODS}  # per seed: per-image misclassification (bool)
NLL = {m: [] for m in METHODS}  # per seed: per-image -log p(y|x)
SECONDS = {m: [] for m in METHODS}
LOSSES = {m: [] for m in METHODS}
start_all = time.perf_counter()
for k, s in enumerate(SEEDS):
    for m in METHODS:
        out = train_method(m, x_tr, y_tr, S, seed=s, desc=f"{m} seed {k}")
        wrong, nll = per_image_scores(out.model, x_te, y_te)
        WRONG[m].append(wrong)
        NLL[m].append(nll)
        SECONDS[m].append(out.seconds)
        LOSSES[m].append(out.losses)
        rec.metric(f"fm_{m}_test_error_seed{k}", 100.0 * wrong.float().mean(), seed=s,
                   correct=pack_bits(~wrong), final_train_loss=out.losses[-1])  # fmt: skip
        rec.metric(f"fm_{m}_test_nll_seed{k}", nll.mean(), seed=s)
        print(f"seed {k} {m:16s} error {100 * wrong.float().mean():6.2f}%  NLL "
              f"{nll.mean():.3f}  train loss {out.losses[-1]:.3f}  {out.seconds:6.1f}s")  # fmt: skip
rec.metric("train_seconds_all", time.perf_counter() - start_all)

# %% [markdown]
# ## Test error and NLL, means over seeds, and the differences
#
# The rows `fm_<method>_test_error` (percent) and `fm_<method>_test_nll` (nats) are means over
# the seeds (the paper prints mean ± std over runs). AMP - ERM is given with two 95 % intervals:
# over seeds (a paired t interval on the per-seed differences: the training randomness) and over
# test images (`repro.stats`' paired bootstrap of the seed-averaged per-image errors: which test
# images were drawn). The same for AMP - the best of dropout, label smoothing and mixup (the best
# chosen on its mean error).

# %%
err = {m: [100.0 * float(w.float().mean()) for w in WRONG[m]] for m in METHODS}
nll_mean = {m: [float(v.mean()) for v in NLL[m]] for m in METHODS}
for m in METHODS:
    mean_err = sum(err[m]) / len(err[m])
    rec.row(f"fm_{m}_test_error", mean_err, dataset=DS, model="SmallCNN", method=LABEL[m],
            seeds=len(SEEDS), per_seed=err[m], n_train=len(y_tr), n_test=len(y_te))  # fmt: skip
    rec.row(f"fm_{m}_test_nll", sum(nll_mean[m]) / len(nll_mean[m]), dataset=DS,
            model="SmallCNN", method=LABEL[m], seeds=len(SEEDS), per_seed=nll_mean[m])  # fmt: skip
    rec.metric(f"fm_{m}_test_error_std", float(torch.tensor(err[m]).std()))
    rec.metric(f"fm_{m}_test_nll_std", float(torch.tensor(nll_mean[m]).std()))


def record_gap(name, a, b, what):
    """Seed and image intervals of mean error a - b (percentage points)."""
    per_seed = [x - y for x, y in zip(err[a], err[b], strict=True)]
    by_seed = seed_interval(per_seed)
    rec.metric(f"{name}_seed", by_seed.estimate, what=what, per_seed=per_seed)
    for key, value in interval_metrics(f"{name}_seed", by_seed).items():
        rec.metric(key, value)
    by_image = seeds_image_interval(WRONG[a], WRONG[b])
    rec.metric(name, 100.0 * by_image.estimate, what=what)
    for key, value in interval_metrics(name, by_image).items():
        rec.metric(key, 100.0 * value)
    print(f"{what}: {by_seed.estimate:+.2f} points, 95% over seeds [{by_seed.low:+.2f}, "
          f"{by_seed.high:+.2f}], over test images [{100 * by_image.low:+.2f}, "
          f"{100 * by_image.high:+.2f}]")  # fmt: skip


record_gap("fm_amp_minus_erm_error", "amp", "erm", "AMP - ERM")
OTHERS = ("dropout", "label_smoothing", "mixup")
best = min(OTHERS, key=lambda m: sum(err[m]))
record_gap("fm_amp_minus_best_other_error", "amp", best, f"AMP - {LABEL[best]}")
nll_gap = seed_interval([a - b for a, b in zip(nll_mean["amp"], nll_mean["erm"], strict=True)])
rec.metric("fm_amp_minus_erm_nll_seed", nll_gap.estimate)
for key, value in interval_metrics("fm_amp_minus_erm_nll_seed", nll_gap).items():
    rec.metric(key, value)

# %% [markdown]
# ## Cost per epoch
#
# Seconds per epoch of each method (mean over seeds, measured in turn under the same load) and
# per 1,000 training images; AMP with one inner step evaluates two gradients per batch (the
# README: "usually takes 1.8 times longer than ERM"). The shared natural baseline
# (`repro.baselines`, Adam, trained once and cached) is recorded for the cross-paper cost
# comparison with the seconds per epoch it recorded when it was trained.

# %%
for m in METHODS:
    per_epoch = sum(SECONDS[m]) / len(SECONDS[m]) / max(P["epochs"], 1)
    rec.metric(f"cost.{m}.epoch_seconds", per_epoch, n_train=len(y_tr),
               batch_size=P["batch_size"])  # fmt: skip
    rec.metric(f"cost.{m}.seconds_per_1000_images", 1000.0 * per_epoch / len(y_tr))
ratio = rec.metric("cost.amp_over_erm", sum(SECONDS["amp"]) / sum(SECONDS["erm"]))
spec = BaselineSpec("natural", **P["natural_baseline"])
natural = baseline(spec, device=dev, data_dir=data_dir, progress=False)
prov = natural.provenance()
n_base = spec.n_train or len(train)
rec.metric("cost.natural_baseline.epoch_seconds", prov["epoch_seconds"], baseline=prov)
rec.metric("cost.natural_baseline.seconds_per_1000_images", 1000.0 * prov["epoch_seconds"] / n_base)
rec.metric("natural_baseline_test_error", 100.0 * (1.0 - prov["test_accuracy"]), baseline=prov)
print(f"AMP / ERM seconds per epoch: {ratio:.2f}x; natural baseline {prov['epoch_seconds']:.1f} "
      f"s/epoch on {n_base} images (trained now: {natural.trained_now})")  # fmt: skip

# %% [markdown]
# ## The paper's eps on this network
#
# AMP once more on the first seed with the paper's eps = 0.5 (inner_lr 1): a side measurement of
# how the paper's setting transfers to this small network (`paper_epsilon_check`).

# %%
if P["paper_epsilon_check"]:
    from dataclasses import replace

    paper = train_method("amp", x_tr, y_tr, replace(S, epsilon=0.5), seed=SEEDS[0])
    wrong, nll = per_image_scores(paper.model, x_te, y_te)
    rec.metric("fm_amp_paper_eps_test_error_seed0", 100.0 * wrong.float().mean(), epsilon=0.5,
               correct=pack_bits(~wrong), train_losses=paper.losses)  # fmt: skip
    rec.metric("fm_amp_paper_eps_final_train_loss_seed0", paper.losses[-1], epsilon=0.5)
    print(f"AMP eps 0.5, seed 0: test error {100 * wrong.float().mean():.2f}%, training losses "
          f"{[round(v, 3) for v in paper.losses]}")  # fmt: skip

# %% [markdown]
# ## Figures: error per seed, and the training loss

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
for i, m in enumerate(METHODS):
    ax1.scatter([i] * len(err[m]), err[m], color="C0", alpha=0.6)
    ax1.errorbar(i + 0.15, sum(err[m]) / len(err[m]),
                 yerr=float(torch.tensor(err[m]).std()) if len(err[m]) > 1 else 0.0,
                 fmt="o", color="C3", capsize=3)  # fmt: skip
ax1.set_xticks(range(len(METHODS)), [LABEL[m] for m in METHODS], rotation=20)
ax1.set_ylabel("test error (%)")
ax1.set_title(f"per seed (blue), mean ± std (red); {len(y_tr)} training images", fontsize=9)
for m in METHODS:
    curves = torch.tensor(LOSSES[m])
    ax2.plot(range(1, curves.shape[1] + 1), curves.mean(0), label=LABEL[m])
ax2.set_xlabel("epoch")
ax2.set_ylabel("mean training loss (AMP: at θ+Δ)")
ax2.set_yscale("log")
ax2.legend(fontsize=8)
fig.tight_layout()
rec.figure(fig, "error_per_seed_and_training_loss",
           f"{DS}, first {len(y_tr)} training images, SmallCNN (width {P['width']}): test error of "
           "each method per seed and its mean ± std over seeds (left); the mean training loss per "
           "epoch over seeds (right; AMP's is the loss at the perturbed weights, mixup's on mixed "
           "images, label smoothing's against smoothed targets)")  # fmt: skip

# %% [markdown]
# ## Paper vs ours
#
# Every paper row is SVHN / CIFAR (not run here); the analogue's rows have no paper number. The
# claims are checked on the analogue.

# %%
table = pd.DataFrame(
    {
        "test error % (mean)": [sum(err[m]) / len(err[m]) for m in METHODS],
        "std over seeds": [float(torch.tensor(err[m]).std()) for m in METHODS],
        "test NLL (mean)": [sum(nll_mean[m]) / len(nll_mean[m]) for m in METHODS],
        "s / epoch": [sum(SECONDS[m]) / len(SECONDS[m]) / max(P["epochs"], 1) for m in METHODS],
    },
    index=[LABEL[m] for m in METHODS],
)
display(table.round(3))
display(rec.comparison(SLUG, scale))
claims = evaluate(load_claims(repro_path(SLUG)), Results.from_results(read_results(out_dir)))
display(pd.DataFrame(claims, columns=["id", "holds", "detail"]))
