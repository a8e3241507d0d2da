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
# # Unsupervised Representation Learning with Deep Convolutional GANs (Radford, Metz & Chintala, ICLR 2016)
#
# Paper: https://arxiv.org/abs/1511.06434. Section 3 gives the architecture guidelines that make
# a convolutional GAN train stably (strided convolutions instead of pooling, batch norm in G and
# D, no hidden dense layers, ReLU and a tanh output in G, LeakyReLU in D); Section 4 the training
# settings (Adam 2e-4, β1 0.5, batch 128, weights from N(0, 0.02), z uniform in 100 dimensions).
# Section 5.1 uses the trained discriminator as a feature extractor: the maps of every layer,
# max-pooled to 4 × 4 and concatenated, feed a regularised linear L2-SVM. Table 1 does this on
# CIFAR-10 with a D trained on ImageNet-1k (82.8 % accuracy), Table 2 on SVHN with 1,000 labels
# (22.48 % error).
#
# Neither table's data is here; their rows are recorded as not run. This notebook runs the same
# protocol on Fashion-MNIST, the stated analogue:
#
# 1. trains a DCGAN (`repro.dcgan.models`, the non-saturating loss of `repro.gan`, the toolkit's
#    loop) on the training images without their labels, with FID (F-MNIST classifier features;
#    never an Inception number) at checkpoints and sample grids over training;
# 2. reads Section 5.1's features from its discriminator, from a discriminator of the same size
#    left at its random initialisation, and takes the raw pixels, and trains the code's L2-SVM on
#    1,000 balanced labels (C chosen on a validation split by the mean error over label draws,
#    then the test error over more draws, the same draws for every representation);
# 3. shows latent-space interpolations (Figure 4) and vector arithmetic (Figure 7).

# %%
# The toolkit, the scale's parameters, the device, the seed and the recorder
import dataclasses
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path, scale_params
from repro.data import available, load_dataset
from repro.dcgan import (
    PAPER,
    Discriminator,
    balanced_draw,
    count_parameters,
    draws_interval,
    evaluate_draws,
    interpolate,
    pixel_features,
    pooled_features,
    select_c,
    train,
    uniform_latent,
    vector_arithmetic,
    with_data_batch_norm,
)
from repro.env import fork_generator, forked_global_rng, pick_device, seed_everything
from repro.record import Recorder, read_results
from repro.sample_quality import LABEL, fid, fmnist_feature_net
from repro.stats import interval_metrics

SLUG = "dcgan"
DS = "fashion_mnist"
P = scale_params(SLUG, scale)
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
OUT = Path(out_dir)
POOL_END = 50_000  # training images 0-50,000: GAN data and labelled pool; the rest: validation
CLASSES = 10
NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"]  # fmt: skip
print(f"scale={scale} device={dev} params={P}")
RUN = available(DS, data_dir)
print(f"{DS} here: {RUN}")

# %% [markdown]
# ## Data
#
# The GAN trains on the first `n_gan_train` of the training split's first 50,000 images (labels
# unused); the labelled pool for the SVM is those 50,000; the validation split (the SVM's C) is
# `n_valid` images from image 50,000 on (the code splits 10,000 off SVHN's training set); the
# test split is the first `n_test` test images (0 = all).

# %%
if RUN:
    train_set = load_dataset(DS, "train", data_dir=data_dir, device=dev)
    test_set = load_dataset(DS, "test", data_dir=data_dir, device=dev)
    x_pool, y_pool = train_set.x[:POOL_END], train_set.y[:POOL_END]
    x_gan = x_pool[: P["n_gan_train"]]
    x_valid = train_set.x[POOL_END : POOL_END + P["n_valid"]]
    y_valid = train_set.y[POOL_END : POOL_END + P["n_valid"]]
    n_test = P["n_test"] or len(test_set.y)
    x_test, y_test = test_set.x[:n_test], test_set.y[:n_test]
    print(f"GAN images {len(x_gan)}, labelled pool {len(x_pool)}, validation {len(x_valid)}, "
          f"test {len(x_test)}")  # fmt: skip
else:
    print(f"{DS} is not here: nothing runs (every row of expected.csv is not run anyway)")

# %% [markdown]
# ## 1. The DCGAN, trained without labels
#
# G: z ∈ [−1, 1]^100 projected to 4 × 4 × 4w, then 5 × 5 transposed convolutions of stride 2 to
# 7 × 7 × 2w, 14 × 14 × w and 28 × 28 × 1 (batch norm and ReLU between, tanh out); D the mirror
# image with LeakyReLU 0.2 (no batch norm on its input layer) and one output. One D step and one
# G step per iteration, Adam (2e-4, β1 0.5). FID is measured on `fid_n` samples of fixed z
# against `fid_n` test images every `fid_every` iterations; its time is excluded from the
# generator steps per second.

# %%
EXTRACTOR = None
if RUN:
    start = time.perf_counter()
    EXTRACTOR = fmnist_feature_net(device=dev, data_dir=data_dir, n_train=P["fid_n_train"],
                                   epochs=P["fid_epochs"], progress=False)  # fmt: skip
    rec.metric("fid_extractor_test_accuracy", EXTRACTOR.test_accuracy, **EXTRACTOR.provenance())
    rec.metric("fid_extractor_seconds", time.perf_counter() - start)
    print(f"FID extractor ({LABEL}): test accuracy {EXTRACTOR.test_accuracy:.3f}, "
          f"sha256 {EXTRACTOR.sha256[:12]}")  # fmt: skip

# %%
if RUN:
    settings = dataclasses.replace(PAPER, batch_size=P["batch_size"])
    x_fid = x_test[: P["fid_n"]]
    run = train(
        x_gan, iterations=P["iterations"], width=P["width"], seed=seed, settings=settings,
        fid_reference=x_fid, fid_extractor=EXTRACTOR, fid_every=P["fid_every"], fid_n=P["fid_n"],
        samples_dir=str(OUT / "samples"), samples_every=P["samples_every"], progress=False,
    )  # fmt: skip
    G, D = run.generator, run.discriminator
    rec.metric(f"{DS}_generator_parameters", count_parameters(G))
    rec.metric(f"{DS}_discriminator_parameters", count_parameters(D))
    rec.metric(f"{DS}_gan_train_seconds", run.seconds)
    steps = rec.metric(f"{DS}_generator_steps_per_second", run.iterations / run.seconds,
                       batch_size=P["batch_size"], width=P["width"], device=str(dev),
                       threads=torch.get_num_threads())  # fmt: skip
    fids = dict(run.fid)
    for it, value in run.fid:
        rec.metric(f"{DS}_fid_iter_{it:06d}", value)
    after_init = [it for it in fids if it > 0]
    rec.metric(f"{DS}_fid_initial", fids[0])
    rec.metric(f"{DS}_fid_first", fids[after_init[0]], iteration=after_init[0])
    rec.metric(f"{DS}_fid_final", fids[run.iterations], iteration=run.iterations)
    best_it = min(after_init, key=fids.get)
    rec.metric(f"{DS}_fid_best", fids[best_it], iteration=best_it)
    # The floor: real training images scored the same way (as many as the samples).
    fid_real = rec.metric(f"{DS}_fid_real_train_images", fid(x_fid, x_gan[: P["fid_n"]], EXTRACTOR))
    rec.metric(f"{DS}_final_d_fake", float(np.mean(run.d_fake[-100:])))
    print(f"{run.iterations} iterations in {run.seconds:.0f} s ({steps:.2f} generator steps/s); "
          f"FID {fids[0]:.1f} (init) -> {fids[after_init[0]]:.1f} (it {after_init[0]}) -> "
          f"{fids[run.iterations]:.1f} (final)")  # fmt: skip


# %%
# Figure: FID over training, and the discriminator's statistics
def smooth(values, k=50):
    k = max(1, min(k, len(values)))
    return np.convolve(values, np.ones(k) / k, mode="valid")


if RUN:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
    its, vals = zip(*run.fid, strict=True)
    a1.plot(its, vals, "o-")
    a1.axhline(fid_real, color="grey", ls="--", label="real images")
    a1.set_yscale("log")
    a1.set_xlabel("generator iteration")
    a1.set_ylabel(f"FID ({LABEL})")
    a1.legend()
    a2.plot(smooth(run.d_loss), label="D loss")
    a2.plot(smooth(run.d_fake), label="mean D(G(z))")
    a2.set_xlabel("generator iteration")
    a2.legend()
    rec.figure(fig, "training", f"{DS}: FID ({LABEL}) of {P['fid_n']} samples at checkpoints "
               "(log scale; dashed: real training images), and the discriminator's loss and mean "
               "D(G(z)) (moving average of 50 iterations)")  # fmt: skip
    plt.show()

# %%
# Figure: sample grids of 64 fixed z during training (the loop's samples_dir)
if RUN:
    grids = sorted((OUT / "samples").glob("iter_*.png"))
    show = (
        grids
        if len(grids) <= 5
        else [grids[i] for i in np.linspace(0, len(grids) - 1, 5).astype(int)]
    )
    fig, axes = plt.subplots(1, len(show), figsize=(3.2 * len(show), 3.4))
    for ax, path in zip(np.atleast_1d(axes), show, strict=True):
        ax.imshow(mpimg.imread(path), cmap="gray")
        ax.set_title(f"iteration {int(path.stem.split('_')[1])}", fontsize=9)
        ax.axis("off")
    rec.figure(fig, "samples", f"{DS}: G on the same 64 z during training")
    plt.show()

# %% [markdown]
# ## 2. The discriminator as a feature extractor (Section 5.1, Tables 1-2)
#
# Each representation: D's three maps (after LeakyReLU) max-pooled to 4 × 4 and concatenated
# (16 · 7 · w dimensions), with batch norm normalising by statistics of `n_bn` training images
# (the code's `infer_bnorm_stats`); the same for a D of the same size at its random
# initialisation; the pixels. One-vs-rest L2-SVM (squared hinge, L2 penalty: the code's
# `LinearSVC`); C from the grid by the mean validation error over `select_draws` draws of 100
# labels per class; then the test error over `draws` draws. The draws are the same for every
# representation, so the differences are paired; the intervals resample both the draws and the
# test images (95 %, 1,000 resamples).

# %%
if RUN:
    label_rng = fork_generator(gen)
    select_sets = [balanced_draw(y_pool, P["per_class"], CLASSES, label_rng)
                   for _ in range(P["select_draws"])]  # fmt: skip
    test_sets = [balanced_draw(y_pool, P["per_class"], CLASSES, label_rng)
                 for _ in range(P["draws"])]  # fmt: skip
    needed = torch.unique(torch.cat(select_sets + test_sets))
    where = torch.full((len(y_pool),), -1, dtype=torch.long)
    where[needed] = torch.arange(len(needed))
    select_local = [where[s].to(dev) for s in select_sets]
    test_local = [where[s].to(dev) for s in test_sets]
    x_lab, y_lab = x_pool[needed.to(dev)], y_pool[needed.to(dev)]
    x_bn = x_pool[: P["n_bn"]]
    with forked_global_rng(gen):
        D_random = Discriminator(width=P["width"]).to(dev)

    def representation(name):
        """(pool, validation, test) features of a representation."""
        if name == "pixels":
            return pixel_features(x_lab), pixel_features(x_valid), pixel_features(x_test)
        net = with_data_batch_norm(D if name == "dcgan" else D_random, x_bn)
        return tuple(pooled_features(net, x) for x in (x_lab, x_valid, x_test))

    CORRECT, SUMMARY = {}, {}
    for name in ("dcgan", "random", "pixels"):
        start = time.perf_counter()
        f_lab, f_valid, f_test = representation(name)
        feat_s = time.perf_counter() - start
        best_c, valid_errors = select_c(f_lab, y_lab, f_valid, y_valid, select_local, P["cs"],
                                        classes=CLASSES)  # fmt: skip
        correct = evaluate_draws(f_lab, y_lab, f_test, y_test, test_local, best_c, classes=CLASSES)
        CORRECT[name] = correct
        per_draw = 100.0 * (1.0 - correct.double().mean(1))
        wrong = [1.0 - correct.double()]
        ci = draws_interval(wrong, lambda m: 100.0 * m[:, 0])
        metric = f"{DS}_{name}_test_error_pct"
        rec.metric(metric, ci.estimate, c=best_c, draws=P["draws"], n_test=len(y_test),
                   labels=P["per_class"] * CLASSES, feature_dim=f_lab.shape[1],
                   std_over_draws=float(per_draw.std()),
                   valid_error_pct={str(k): v for k, v in valid_errors.items()})  # fmt: skip
        for key, value in interval_metrics(metric, ci).items():
            rec.metric(key, value)
        rec.metric(f"{DS}_{name}_code_interval_pct", 1.96 * float(per_draw.std()))
        rec.metric(f"{DS}_{name}_svm_c", best_c)
        rec.metric(f"{DS}_{name}_feature_dim", f_lab.shape[1])
        rec.metric(f"{DS}_{name}_seconds", time.perf_counter() - start, features_seconds=feat_s)
        SUMMARY[name] = {"features": f_lab.shape[1], "C": best_c, "test error %": ci.estimate,
                         "low": ci.low, "high": ci.high, "valid": valid_errors,
                         "± 1.96 std over draws": 1.96 * float(per_draw.std()),
                         "seconds": time.perf_counter() - start}  # fmt: skip
        print(f"{name}: {f_lab.shape[1]} features, C = {best_c:g}, test error "
              f"{ci.format(digits=2)} %, {time.perf_counter() - start:.0f} s")  # fmt: skip

    for other in ("random", "pixels"):
        diff = draws_interval([CORRECT["dcgan"].double(), CORRECT[other].double()],
                              lambda m: 100.0 * (m[:, 0] - m[:, 1]))  # fmt: skip
        metric = f"{DS}_{other}_minus_dcgan_error_pct"
        rec.metric(metric, diff.estimate)
        for key, value in interval_metrics(metric, diff).items():
            rec.metric(key, value)
        print(f"error({other}) - error(dcgan): {diff.format(digits=2)} points")
    display(pd.DataFrame(SUMMARY).T.drop(columns=["valid"]))

# %%
# Figure: the test error of each representation, and the validation error over C
if RUN:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
    labels = {"dcgan": "DCGAN D", "random": "random D", "pixels": "raw pixels"}
    err = [SUMMARY[k]["test error %"] for k in labels]
    lows, highs = [SUMMARY[k]["low"] for k in labels], [SUMMARY[k]["high"] for k in labels]
    a1.bar(list(labels.values()), err,
           yerr=[np.subtract(err, lows), np.subtract(highs, err)], capsize=6)  # fmt: skip
    a1.set_ylabel(f"test error % ({P['per_class'] * CLASSES} labels)")
    a1.set_ylim(0, max(highs) * 1.15)
    for k, label in labels.items():
        valid = SUMMARY[k]["valid"]
        a2.plot(sorted(valid), [valid[c] for c in sorted(valid)], "o-", label=label)
    a2.set_xscale("log")
    a2.set_xlabel("SVM C")
    a2.set_ylabel("validation error %")
    a2.legend()
    rec.figure(fig, "features", f"{DS}: L2-SVM test error on {P['per_class'] * CLASSES} labels "
               f"(mean over {P['draws']} label draws, 95 % interval over draws and test images) "
               "for the DCGAN discriminator's features, a random discriminator's and raw "
               "pixels (left); mean validation error over C (right)")  # fmt: skip
    plt.show()

# %% [markdown]
# ## 3. The latent space (Section 6)
#
# Figure 4 walks the latent space between random points of Z: smooth transitions, not sharp
# jumps, are the paper's evidence against memorisation. Figure 7 does arithmetic on the mean z of
# three exemplars per concept; here the concepts are Fashion-MNIST classes, the exemplars the
# three samples of G that the FID extractor's classifier assigns to a class most confidently,
# and the result is shown with eight copies with uniform noise of ±0.25 added, as in the paper.

# %%
if RUN:
    z_rng = fork_generator(gen)
    rows, steps_n = P["interp_rows"], P["interp_steps"]
    ends = uniform_latent(2 * rows, z_rng).to(dev)
    path = torch.cat([interpolate(ends[2 * i], ends[2 * i + 1], steps_n) for i in range(rows)])
    with torch.no_grad():
        frames = G(path).cpu()
    fig, axes = plt.subplots(rows, steps_n, figsize=(steps_n * 0.9, rows * 0.95))
    for i, ax in enumerate(axes.flat):
        ax.imshow(frames[i, 0], cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    rec.figure(fig, "interpolations", f"{DS}: G along straight lines between {rows} pairs of "
               f"random z ({steps_n} steps, ends included; Figure 4's walk)")  # fmt: skip
    plt.show()

# %%
if RUN:
    z_pool = uniform_latent(P["arith_pool"], z_rng).to(dev)
    with torch.no_grad():
        probs = torch.softmax(EXTRACTOR.net(G(z_pool)), dim=1)
    conf, cls = probs.max(1)

    def exemplars(k, n=3):
        """The z of the n samples assigned to class k most confidently."""
        score = torch.where(cls == k, conf, torch.full_like(conf, -1.0))
        return z_pool[score.topk(n).indices]

    EXAMPLES = [(9, 7, 5), (2, 0, 3)]  # ankle boot − sneaker + sandal; pullover − T-shirt + dress
    fig, axes = plt.subplots(len(EXAMPLES), 13, figsize=(13 * 0.95, len(EXAMPLES) * 1.25))
    for r, (a, b, c) in enumerate(EXAMPLES):
        za, zb, zc = exemplars(a), exemplars(b), exemplars(c)
        result = vector_arithmetic(za, zb, zc, rng=fork_generator(seed, device=dev))
        with torch.no_grad():
            means = G(torch.stack([za.mean(0), zb.mean(0), zc.mean(0)])).cpu()
            out = G(result).cpu()
        images = [means[0], means[1], means[2], None, *out]
        titles = [NAMES[a], f"− {NAMES[b]}", f"+ {NAMES[c]}", "=", *[""] * len(out)]
        for ax, img, title in zip(axes[r], images, titles, strict=True):
            ax.axis("off")
            ax.set_title(title, fontsize=7)
            if img is not None:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    rec.figure(fig, "vector_arithmetic", f"{DS}: G(mean z of 3 exemplars) for each concept and "
               "G of mean(A) − mean(B) + mean(C), then 8 copies with uniform noise ±0.25 "
               "(Figure 7's protocol; exemplars chosen by the FID extractor's classifier)")  # fmt: skip
    plt.show()

# %% [markdown]
# ## Paper vs ours
#
# Every row of `expected.csv` is Table 1's (CIFAR-10, ImageNet-1k) or Table 2's (SVHN): not run
# here. The Fashion-MNIST numbers above are free metrics, never compared with the paper's; the
# claims are checked on them.

# %%
# The comparison table and the claims, as the runner will store them
display(rec.comparison(SLUG, scale))
claims = evaluate(load_claims(repro_path(SLUG)), Results.from_results(read_results(out_dir)))
display(pd.DataFrame(claims, columns=["id", "holds", "detail"]))
