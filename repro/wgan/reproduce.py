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
# # Wasserstein GAN (Arjovsky, Chintala & Bottou, ICML 2017)
#
# Paper: https://arxiv.org/abs/1701.07875. A critic $f_w$ with its weights clipped to
# $[-c, c]$ is trained to maximise $E_{P_r}[f_w(x)] - E_{z}[f_w(g_\theta(z))]$, an estimate of
# the Earth-Mover distance up to a constant (Eq. 3); the generator descends
# $-E_z[f_w(g_\theta(z))]$ (Algorithm 1: RMSProp, $\alpha$ = 5e-5, $c$ = 0.01, $m$ = 64,
# $n_{critic}$ = 5; the code trains the critic 100 times for the first 25 generator iterations
# and every 500th). Section 4 claims (i) the estimate, $-$Loss_D, is a meaningful loss: it falls
# as the samples improve (Figure 3), where the standard GAN's JS estimate does not (Figure 4);
# (ii) more stable training: with a generator without batch norm (Figure 6) or an MLP generator
# (Figure 7) WGAN still learns where the standard GAN fails or collapses, while both work with
# the DCGAN generator (Figure 5); no mode collapse is seen for WGAN.
#
# The paper's data (LSUN bedrooms) is not here and it prints no number: the protocol runs on
# Fashion-MNIST as a stated analogue, with sample quality measured by FID on the features of our
# Fashion-MNIST classifier — "FID (F-MNIST classifier features)", not an Inception FID — and
# diversity by the entropy of the classifier's predicted classes over the samples. Every row of
# `expected.csv` is ours (nothing to compare with); the claims are checked on them.

# %%
import math
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path, scale_params
from repro.data import available, load_dataset
from repro.env import fork_generator, forked_global_rng, pick_device, seed_everything
from repro.gan import NonSaturating
from repro.record import Recorder, read_results
from repro.sample_quality import LABEL, FIDReference, fid, fmnist_feature_net, inception_score
from repro.stats import interval_metrics, t_interval
from repro.wgan import CriticSchedule, WGANClip, class_entropy, median_filter, spearman_interval
from repro.wgan.baseline import js_estimate
from repro.wgan.experiment import (
    GENERATORS,
    build_critic,
    build_generator,
    gaussian_latent,
    train_in_segments,
)
from repro.wgan.models import count_parameters

SLUG = "wgan"
P = scale_params(SLUG, scale)
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
print(f"scale={scale} device={dev} params={P}")
DS = "fashion_mnist"
ALGORITHMS = ("wgan", "gan")
GEN_LABEL = {"dcgan": "DCGAN G (batch norm)", "dcgan_nobn": "DCGAN G, no batch norm",
             "mlp": "MLP G"}  # fmt: skip
ALG_LABEL = {"wgan": "WGAN", "gan": "standard GAN (-log D)"}
ESTIMATE = {"wgan": "-Loss_D (EM estimate)", "gan": "JS estimate"}

# %% [markdown]
# ## Data, and the feature network FID and the class entropy are measured with
#
# The generators train on the first `n_train` Fashion-MNIST training images (0 = all 60,000).
# The test split is cut into `fid_splits` disjoint sets of `n_fid` images: the final FID of an
# arm is measured on each of them against as many fresh samples (mean and 95% t-interval over the
# splits; differences between arms are paired by split). The FIDs during training use the first
# `n_ckpt_fid` test images and one fixed set of latent codes, the same for every checkpoint and
# arm. A floor: the FID of `n_fid` training images against the first test split.

# %%
if not available(DS, data_dir):
    raise ReproError("Fashion-MNIST is not here: apt-get install dataset-fashion-mnist")
train = load_dataset(DS, "train", data_dir=data_dir, device=dev)
test = load_dataset(DS, "test", data_dir=data_dir, device=dev)
x_train = train.x if not P["n_train"] else train.x[: P["n_train"]]
n_fid, splits = P["n_fid"], P["fid_splits"]
if n_fid * splits > len(test.x) or P["n_ckpt_fid"] > len(test.x):
    raise ReproError(f"{splits} splits of {n_fid} test images: the test split has {len(test.x)}")
real_splits = [test.x[k * n_fid : (k + 1) * n_fid] for k in range(splits)]
real_ckpt = test.x[: P["n_ckpt_fid"]]

extractor = fmnist_feature_net(device=dev, data_dir=data_dir, n_train=P["feature_n_train"],
                               epochs=P["feature_epochs"], progress=False)  # fmt: skip
rec.metric("feature_net_test_accuracy", extractor.test_accuracy, **extractor.provenance())
with torch.no_grad():
    real_logits = extractor.net(real_splits[0])
floor = rec.metric("real_fid_floor", fid(real_splits[0], x_train[:n_fid], extractor))
ckpt_fid = FIDReference(real_ckpt, extractor)  # the checkpoints' real features, embedded once
split_fid = [FIDReference(r, extractor) for r in real_splits]
real_entropy = rec.metric("real_class_entropy", class_entropy(real_logits))
print(f"{len(x_train)} training images; feature network ({LABEL}) test accuracy "
      f"{extractor.test_accuracy:.3f}, sha256 {extractor.sha256[:12]}")  # fmt: skip
print(f"floor: FID of {n_fid} training vs test images {floor:.2f}; class entropy of real test "
      f"images {real_entropy:.3f} nats ({math.exp(real_entropy):.1f} classes)")  # fmt: skip

# %% [markdown]
# ## Training every arm (Algorithm 1 and the standard GAN) with FID at checkpoints
#
# One arm per generator (`generators`) and algorithm, all with the DCGAN critic. WGAN: RMSProp
# at `lr`, clipping at `clip`, `n_critic` critic steps per generator step and the code's schedule
# (`long_critic` steps for the first `warmup` generator iterations and every `every`-th). The
# standard GAN: the −log D trick with DCGAN's recipe (Adam `gan_lr`, β1 `gan_beta1`, one
# discriminator step per generator step). The same number of generator iterations for every
# arm. The toolkit's loop (`repro.gan_loop.train_gan`) runs each arm in segments between the
# checkpoints, resuming from its own checkpoint file, which gives the same networks as one
# uninterrupted run.

# %%
ITER = P["iterations"]
STOPS = sorted({max(1, round(ITER * (k + 1) / P["checkpoints"])) for k in range(P["checkpoints"])})
z_ckpt = gaussian_latent(P["n_ckpt_fid"], fork_generator(seed + 1, device=dev))
schedule = CriticSchedule(P["n_critic"], P["warmup"], P["every"], P["long_critic"])
print(f"checkpoints at generator iterations {STOPS}; WGAN critic steps per arm "
      f"{schedule.total(ITER)} (schedule {schedule})")  # fmt: skip


@torch.no_grad()
def samples(g, z, batch=1000):
    return torch.cat([g(z[i : i + batch]) for i in range(0, len(z), batch)])


ARMS = {}
workdir = tempfile.TemporaryDirectory(prefix="wgan-")  # the loop's checkpoints, not the run's
for g_kind in P["generators"]:
    if g_kind not in GENERATORS:
        raise ReproError(f"unknown generator {g_kind!r} in repro.toml")
    for alg in ALGORITHMS:
        arm = f"{g_kind}_{alg}"
        with forked_global_rng(gen):
            G = build_generator(g_kind, ngf=P["ngf"], mlp_hidden=P["mlp_hidden"]).to(dev)
            D = build_critic(ndf=P["ndf"]).to(dev)
        if alg == "wgan":
            loss, n_critic = WGANClip(P["clip"]), schedule
            opt_g = torch.optim.RMSprop(G.parameters(), lr=P["lr"])
            opt_d = torch.optim.RMSprop(D.parameters(), lr=P["lr"])
        else:
            loss, n_critic, betas = NonSaturating(), 1, (P["gan_beta1"], 0.999)
            opt_g = torch.optim.Adam(G.parameters(), lr=P["gan_lr"], betas=betas)
            opt_d = torch.optim.Adam(D.parameters(), lr=P["gan_lr"], betas=betas)
        fids = {}

        def at_stop(it, G=G, fids=fids):
            fids[it] = ckpt_fid(samples(G, z_ckpt))

        start = time.perf_counter()
        out = train_in_segments(
            G, D, x_train, loss=loss, stops=STOPS, batch_size=P["batch_size"], n_critic=n_critic,
            opt_g=opt_g, opt_d=opt_d, rng=fork_generator(gen, device=dev),
            checkpoint=Path(workdir.name) / f"{arm}.pt", on_stop=at_stop,
            config={"arm": arm, "ngf": P["ngf"], "ndf": P["ndf"]}, desc=arm,
        )  # fmt: skip
        seconds = rec.metric(f"{arm}_seconds", time.perf_counter() - start)
        # the curve the paper plots: -Loss_D for WGAN, 1/2 L(D, g) + log 2 for the GAN
        curve = (
            out.run.statistic if alg == "wgan" else [js_estimate(v) for v in out.run.critic_loss]
        )
        ARMS[arm] = dict(g=g_kind, alg=alg, G=G, fids=fids, curve=curve,
                         filtered=median_filter(curve, P["median_window"]))  # fmt: skip
        rec.metric(f"{arm}_generator_parameters", count_parameters(G))
        rec.metric(f"{arm}_critic_steps", schedule.total(ITER) if alg == "wgan" else ITER)
        print(f"{arm}: {seconds:.0f}s, FID at checkpoints "
              f"{[round(fids[s], 1) for s in STOPS]}")  # fmt: skip
workdir.cleanup()

# %% [markdown]
# ## Figure 3 and 4: the loss estimate against sample quality during training
#
# The curve of each arm (per generator iteration, the last critic step's value), median-filtered
# over `median_window` iterations as the paper's plots (window truncated at the ends), read at
# each checkpoint, against the FID there. Spearman's ρ over the checkpoints, with a bootstrap 95%
# interval (checkpoints resampled, 1,000 times, seed 0).

# %%
for arm, a in ARMS.items():
    est = [a["filtered"][s - 1] for s in STOPS]
    fids = [a["fids"][s] for s in STOPS]
    for s, e, f in zip(STOPS, est, fids, strict=True):
        rec.metric(f"{arm}_loss_iter{s}", e)
        rec.metric(f"{arm}_fid_iter{s}", f)
    rec.metric(f"{arm}_loss_first", est[0])
    rec.metric(f"{arm}_loss_last", est[-1])
    rec.metric(f"{arm}_fid_first", fids[0])
    rec.metric(f"{arm}_fid_last", fids[-1])
    rho = spearman_interval(est, fids)
    a["rho"] = rho
    row = f"fm_{arm}_loss_fid_spearman"
    if math.isnan(rho.estimate):
        rec.not_run(row, "the filtered estimate or FID is constant over the checkpoints")
    else:
        rec.row(row, rho.estimate, dataset=DS, checkpoints=len(STOPS), estimate=ESTIMATE[a["alg"]],
                iterations=ITER)  # fmt: skip
        if not math.isnan(rho.low):
            for name, value in interval_metrics(row.removeprefix("fm_"), rho).items():
                rec.metric(name, value)
    print(f"{arm}: {ESTIMATE[a['alg']]} at checkpoints {[round(v, 4) for v in est]}; "
          f"Spearman with FID {rho}")  # fmt: skip

n_g = len(P["generators"])
fig, axes = plt.subplots(n_g, 2, figsize=(11, 3.2 * n_g), squeeze=False)
for i, g_kind in enumerate(P["generators"]):
    for j, alg in enumerate(ALGORITHMS):
        a, ax = ARMS[f"{g_kind}_{alg}"], axes[i, j]
        its = np.arange(1, len(a["curve"]) + 1)
        ax.plot(its, a["curve"], color="C0", alpha=0.25, lw=0.6)
        ax.plot(its, a["filtered"], color="C0", lw=1.5)
        ax.set_ylabel(ESTIMATE[alg], color="C0", fontsize=8)
        ax2 = ax.twinx()
        ax2.plot(STOPS, [a["fids"][s] for s in STOPS], "o-", color="C3", ms=3)
        ax2.set_ylabel("FID", color="C3", fontsize=8)
        ax2.ticklabel_format(axis="y", useOffset=False)
        ax.set_title(f"{ALG_LABEL[alg]}, {GEN_LABEL[g_kind]}: Spearman {a['rho'].estimate:+.2f}",
                     fontsize=9)  # fmt: skip
        ax.set_xlabel("generator iterations", fontsize=8)
fig.tight_layout()
rec.figure(
    fig,
    "loss_curves",
    f"{DS}: the loss estimate per generator iteration (light) and median-filtered over "
    f"{P['median_window']} iterations (dark) — WGAN's -Loss_D (Figure 3) and the standard GAN's "
    f"JS estimate (Figure 4) — with FID ({LABEL}, {P['n_ckpt_fid']} samples) at the checkpoints",
)
plt.close(fig)

# %% [markdown]
# ## Figures 5–7: the final samples of every arm
#
# FID on each of the `fid_splits` test splits against `n_fid` fresh samples; the class entropy
# of all those samples (log 10 = 2.303 nats when the ten classes are equally frequent) and the
# Inception-score formula on our classifier (IS (F-MNIST classifier), 10 splits).


# %%
FINAL = {}
for arm, a in ARMS.items():
    rng = fork_generator(seed + 2, device=dev)  # the same codes for every arm
    per_split, logits = [], []
    for k in range(splits):
        fake = samples(a["G"], gaussian_latent(n_fid, rng))
        per_split.append(split_fid[k](fake))
        with torch.no_grad():
            logits.append(extractor.net(fake))
        if k == 0:
            first = fake
    FINAL[arm] = per_split
    mean, low, high = t_interval(per_split)
    row = f"fm_{arm}_fid"
    rec.row(row, mean, dataset=DS, samples=n_fid, splits=splits, iterations=ITER,
            per_split=[round(v, 4) for v in per_split])  # fmt: skip
    if not math.isnan(low):
        rec.metric(f"{arm}_fid.ci95_low", low)
        rec.metric(f"{arm}_fid.ci95_high", high)
    entropy = rec.row(f"fm_{arm}_class_entropy", class_entropy(torch.cat(logits)), dataset=DS,
                      samples=n_fid * splits)  # fmt: skip
    is_mean, is_std = inception_score(first, extractor)
    rec.metric(f"{arm}_inception_score", is_mean, std=is_std, samples=n_fid)
    a["grid"] = first[:64]
    print(f"{arm}: FID {mean:.1f} [{low:.1f}, {high:.1f}] over {splits} splits; class entropy "
          f"{entropy:.3f} ({math.exp(entropy):.1f} classes); IS {is_mean:.2f}")  # fmt: skip

for g_kind in P["generators"]:
    diff = np.asarray(FINAL[f"{g_kind}_gan"]) - np.asarray(FINAL[f"{g_kind}_wgan"])
    mean, low, high = t_interval(diff)
    name = f"{g_kind}_gan_minus_{g_kind}_wgan_fid"
    rec.metric(name, mean)
    if not math.isnan(low):
        rec.metric(f"{name}.ci95_low", low)
        rec.metric(f"{name}.ci95_high", high)
    print(f"{g_kind}: FID GAN - WGAN {mean:+.1f} [{low:+.1f}, {high:+.1f}] (paired over splits)")

for g_kind in GENERATORS:
    if g_kind in P["generators"]:
        continue
    for alg in ALGORITHMS:
        for what in ("fid", "class_entropy", "loss_fid_spearman"):
            rec.not_run(f"fm_{g_kind}_{alg}_{what}",
                        f"the {g_kind} generator's arms run at other scales only "
                        f"(not in this scale's generators: CPU budget)")  # fmt: skip

fig, axes = plt.subplots(n_g, 2, figsize=(8, 4.1 * n_g), squeeze=False)
for i, g_kind in enumerate(P["generators"]):
    for j, alg in enumerate(ALGORITHMS):
        arm = f"{g_kind}_{alg}"
        grid = ARMS[arm]["grid"][:64].cpu()
        n = math.ceil(math.sqrt(len(grid)))
        canvas = torch.ones(n * 29 + 1, n * 29 + 1)
        for k, img in enumerate(grid):
            r, c = divmod(k, n)
            canvas[1 + r * 29 : 1 + r * 29 + 28, 1 + c * 29 : 1 + c * 29 + 28] = img[0]
        axes[i, j].imshow(canvas, cmap="gray", vmin=0, vmax=1)
        axes[i, j].set_title(f"{ALG_LABEL[alg]}, {GEN_LABEL[g_kind]}\n"
                             f"FID {np.mean(FINAL[arm]):.1f}", fontsize=9)  # fmt: skip
        axes[i, j].axis("off")
fig.tight_layout()
rec.figure(
    fig,
    "samples",
    f"{DS}: samples of every arm after {ITER} generator iterations (not cherry-picked), WGAN left, "
    "the standard GAN right; rows: the DCGAN generator (Figure 5), without batch norm and with "
    "constant filters (Figure 6), the MLP generator (Figure 7) where this scale runs it",
)
plt.close(fig)

fig, ax = plt.subplots(figsize=(7, 3.8))
for k, a in enumerate(ARMS.values()):
    style = "-" if a["alg"] == "wgan" else "--"
    ax.plot(STOPS, [a["fids"][s] for s in STOPS], style, marker="o", ms=3, color=f"C{k // 2}",
            label=f"{ALG_LABEL[a['alg']]}, {GEN_LABEL[a['g']]}")  # fmt: skip
ax.axhline(floor, color="gray", lw=0.8, ls=":", label="training vs test images")
ax.set_yscale("log")
ax.set_xlabel("generator iterations")
ax.set_ylabel(f"FID ({LABEL})")
ax.legend(fontsize=7)
rec.figure(
    fig,
    "fid_during_training",
    f"{DS}: FID of every arm at the checkpoints ({P['n_ckpt_fid']} samples, fixed codes)",
)
plt.close(fig)

# %% [markdown]
# ## Paper vs ours
#
# The paper prints no number: every row is our Fashion-MNIST analogue (`not_compared` or not
# run); the claims of `claims.py` carry the verdict.

# %%
display(rec.comparison(SLUG, scale))
claims = evaluate(load_claims(repro_path(SLUG)), Results.from_results(read_results(out_dir)))
display(pd.DataFrame(claims, columns=["id", "holds", "detail"]))
