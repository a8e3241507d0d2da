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
# # Understanding the role of individual units in a deep neural network (Bau et al., PNAS 2020)
#
# Paper: https://arxiv.org/abs/2009.05041. A unit is removed by forcing its output to zero
# ("leaving the rest of the network intact. No retraining is done").
#
# 1. **Classifier (Fig. 2).** The units of the last convolutional layer are ranked for each
#    class by how much removing each one alone lowers the class's *balanced* single-class
#    accuracy (the class against all others: (recall + true-negative rate) / 2) on the training
#    split. On held-out images, each class's top k units (k / units ≈ 4 %, the paper's 20 / 512)
#    are removed; or all units but them (only the top k kept); or, as our control, k random
#    units. The paper: on Places365, removing each class's 20 most important conv5_3 units of
#    VGG-16 leaves 53.0 % mean single-class accuracy (chance 50 %), keeping only them 73.0 %
#    (of 76.6 %).
# 2. **Generator (Fig. 4a).** A GAN's units are ranked for a class by dissection (IoU of each
#    unit's top-1 % activation region with the class's segmentation of the samples) and, ours,
#    by the causal drop of the class's probability when the unit alone is zeroed; a class's top
#    units are removed and we count how many of the class's samples (and pixels) are left,
#    against random units. The paper: removing 20 tree units removes 53.3 % of the tree pixels.
#
# The paper's data, networks and segmenter are not here: every row of `expected.csv` is recorded
# as not run, and the protocol runs on **Fashion-MNIST** (a small VGG-like CNN; a DCGAN from
# `repro.dcgan`; the toolkit's pinned F-MNIST classifier labels the generated images), as free
# metrics `fm_*` with 95 % paired bootstrap intervals over the test images / samples.

# %%
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from repro import ReproError
from repro.bau_units import (
    GEN_LAYER,
    LAYER,
    UnitCNN,
    ablate,
    balanced_accuracy,
    class_interventions,
    class_removals,
    dissect,
    intervention_statistics,
    predict_ablated,
    rank_units,
    removal_statistics,
    single_unit_ablation,
    unit_class_effect,
)
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path, scale_params
from repro.data import available, load_dataset
from repro.dcgan import Settings, uniform_latent
from repro.dcgan import train as train_dcgan
from repro.env import fork_generator, forked_global_rng, pick_device, seed_everything
from repro.expected import read_expected
from repro.record import Recorder, read_results
from repro.sample_quality import fmnist_feature_net
from repro.stats import interval_metrics, mean_interval, pack_bits
from repro.train import predict, train_classifier

SLUG = "bau_units"
P = scale_params(SLUG, scale)
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
print(f"scale={scale} device={dev} params={P}")
NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"]  # fmt: skip
K = len(NAMES)
CLOCK = time.perf_counter()


def record(name, interval, scale_by=1.0):
    """A statistic and its 95 % interval as `fm_<name>` and `fm_<name>.ci95_low/_high`."""
    rec.metric(f"fm_{name}", scale_by * interval.estimate)
    for key, value in interval_metrics(f"fm_{name}", interval).items():
        rec.metric(key, scale_by * value)


# %%
for exp in read_expected(repro_path(SLUG) / "expected.csv"):
    if not exp.not_run_reason:
        rec.not_run(exp.id, "the paper's data and pretrained networks are not available here")
DS = "fashion_mnist"
if not available(DS, data_dir):
    raise ReproError("Fashion-MNIST is not here: apt-get install dataset-fashion-mnist")
train = load_dataset(DS, "train", data_dir=data_dir, device=dev)
test = load_dataset(DS, "test", data_dir=data_dir, device=dev)


def first(x, y, n):
    return (x, y) if not n else (x[:n], y[:n])


x_tr, y_tr = first(train.x, train.y, P["n_train"])
x_rank, y_rank = first(train.x, train.y, P["n_rank"])
x_te, y_te = first(test.x, test.y, P["n_test"])
print(f"{DS}: classifier trained on {len(y_tr)}, units ranked on {len(y_rank)} training images, "
      f"tested on {len(y_te)} test images")  # fmt: skip

# %% [markdown]
# ## The classifier
#
# `UnitCNN`: three 3 × 3 convolution blocks (32, 64 and `units` maps, ReLU, max-pooling), two
# dense layers; `conv3` is the dissected layer (VGG-16's conv5_3). Trained by the toolkit's loop.

# %%
with forked_global_rng(gen):
    model = UnitCNN(P["units"], P["hidden"], K).to(dev)
start = time.perf_counter()
losses = train_classifier(model, x_tr, y_tr, epochs=P["epochs"], batch_size=P["batch_size"],
                          lr=P["lr"], generator=gen, desc=f"{DS} UnitCNN", progress=False)  # fmt: skip
model.eval()
rec.metric("fm_classifier_train_seconds", time.perf_counter() - start)
correct = predict(model, x_te) == y_te
rec.metric("fm_test_accuracy", 100.0 * float(correct.float().mean()), correct=pack_bits(correct))
for key, value in interval_metrics("fm_test_accuracy", mean_interval(correct.cpu())).items():
    rec.metric(key, 100.0 * value)
print(f"loss per epoch {[round(v, 4) for v in losses]}; test accuracy "
      f"{100 * float(correct.float().mean()):.2f}%")  # fmt: skip

# %% [markdown]
# ## Ranking the units on the training split (single-unit ablation)
#
# Each of the `units` units of `conv3` is removed alone and every class's balanced accuracy is
# measured on the first `n_rank` training images (the code's `single_unit_ablation_ba`); a
# class's units are sorted by the accuracy that is left, lowest first. The removals run as
# copies of each batch (`ablate_each`): the convolutions before `conv3` run once.

# %%
start = time.perf_counter()
single = single_unit_ablation(model, LAYER, x_rank, y_rank, classes=K)
ranking = rank_units(single.ablated)  # (K, units): most important first
rec.metric("fm_rank_seconds", time.perf_counter() - start)
n_units, k = ranking.shape[1], P["k"]
rec.metric("fm_units", n_units)
rec.metric("fm_k", k)
# Fig. 2a's kind: the four most important units of each class, accuracy lost alone on the
# training images (the ranking) and on the test images.
top4 = ranking[:, :4]
test_single = predict_ablated(model, LAYER, [[]] + [[int(u)] for u in top4.flatten()], x_te)
ba_test = balanced_accuracy(test_single, y_te, K)  # (1 + 4K, K)
lost_test = (ba_test[0][None] - ba_test[1:]).view(K, 4, K)
lost_train = single.drop[top4.flatten()].view(K, 4, K)
units_table = pd.DataFrame(
    [
        [NAMES[c], *(f"{int(top4[c, i])} ({100 * lost_train[c, i, c]:.1f} / "
                     f"{100 * lost_test[c, i, c]:.1f})" for i in range(4))]
        for c in range(K)
    ],
    columns=["class", "1st unit", "2nd", "3rd", "4th"],
)  # fmt: skip
print("the four most important conv3 units per class (balanced accuracy lost, points: "
      "training images / test images)")  # fmt: skip
display(units_table)
for split, lost in (("train", lost_train), ("test", lost_test)):
    rec.metric(f"fm_top1_unit_lost_{split}", 100.0 * float(lost[range(K), 0, range(K)].mean()))

# %% [markdown]
# ## Removing each class's top k units, only them, or k random units (Fig. 2b-d)

# %%
start = time.perf_counter()
iv = class_interventions(model, LAYER, x_te, ranking, k, draws=P["draws"],
                         generator=fork_generator(gen))  # fmt: skip
stats = intervention_statistics(iv, y_te)
rec.metric("fm_intervention_seconds", time.perf_counter() - start)
for name, interval in stats.items():
    record(name, interval)
per_class = pd.DataFrame(
    [
        [NAMES[c], stats[f"class{c}_ba_base"].estimate, stats[f"class{c}_drop_top"].format(digits=1),
         stats[f"class{c}_drop_random"].format(digits=1), stats[f"class{c}_drop_keep"].format(digits=1),
         ", ".join(str(int(u)) for u in iv.top_units[c])]
        for c in range(K)
    ],
    columns=["class", "balanced acc. %", f"drop: top {k} removed", f"drop: {k} random removed",
             f"drop: only top {k} kept", "top units"],
)  # fmt: skip
display(per_class.round(1))
summary = pd.DataFrame(
    [[s, stats[f"ba_{a}"].format(digits=1), stats[f"acc_{a}"].format(digits=1)]
     for s, a in (("unchanged", "base"), (f"{k} most important units removed", "top"),
                  (f"{k} random units removed", "random"),
                  (f"{n_units - k} least important removed (top {k} kept)", "keep"))],
    columns=["setting", "balanced single-class accuracy % (mean over classes)",
             "all-class accuracy % (mean over classes' settings)"],
)  # fmt: skip
print(f"{DS}: the analogue of Fig. 2b's inset (chance 50% and 10%)")
display(summary)

fig, ax = plt.subplots(figsize=(7.5, 4.2))
rows = [("base", "unchanged", "k", "o"), ("top", f"top {k} removed", "tab:red", "x"),
        ("keep", f"only top {k} kept", "tab:green", "s"),
        ("random", f"{k} random removed", "tab:gray", "^")]  # fmt: skip
for arm, label, color, marker in rows:
    values = [stats[f"class{c}_ba_base"].estimate
              - (stats[f"class{c}_drop_{arm}"].estimate if arm != "base" else 0.0)
              for c in range(K)]  # fmt: skip
    ax.scatter(values, range(K), label=label, color=color, marker=marker)
ax.axvline(50, color="k", lw=0.8, ls=":")
ax.set_yticks(range(K), NAMES, fontsize=8)
ax.set_xlabel("balanced single-class accuracy (%)")
ax.legend(fontsize=8, loc="lower left")
ax.set_title(f"{DS}: removing each class's most important conv3 units (Fig. 2d)", fontsize=9)
fig.tight_layout()
rec.figure(
    fig,
    "class_unit_removal",
    f"{DS}, {n_units} conv3 units: each class's balanced single-class accuracy on the test split "
    f"unchanged, with its {k} most important units removed (ranked on training images), with all "
    f"but those {k} removed, and with {k} random units removed (mean of {P['draws']} draws); "
    "chance is 50% (the analogue of the paper's Fig. 2d)",
)

# %% [markdown]
# ## Removing more and more units, most or least important first (Fig. 2c)

# %%
sizes = sorted({n for n in (1, 2, 3, 4, 5, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
                if n < n_units} | {n_units - 1})  # fmt: skip
shown = sorted(range(K), key=lambda c: -stats[f"class{c}_drop_top"].estimate)[:2]
x_curve, y_curve = x_te[:2000], y_te[:2000]
fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 3.4), squeeze=False)
for ax, c in zip(axes[0], shown, strict=True):
    order = ranking[c].tolist()
    sets = [[]] + [order[:n] for n in sizes] + [order[::-1][:n] for n in sizes]
    ba = balanced_accuracy(predict_ablated(model, LAYER, sets, x_curve), y_curve, K)[:, c]
    ax.plot(sizes, 100 * ba[1 : 1 + len(sizes)].cpu(), "o-", color="tab:red",
            label="most important removed first")  # fmt: skip
    ax.plot(sizes, 100 * ba[1 + len(sizes) :].cpu(), "s-", color="tab:green",
            label="least important removed first")  # fmt: skip
    ax.axhline(100 * float(ba[0]), color="k", lw=0.8, label="unchanged")
    ax.axhline(50, color="k", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("units removed")
    ax.set_ylabel("balanced accuracy (%)")
    ax.set_title(f"{NAMES[c]}", fontsize=9)
    ax.legend(fontsize=7)
fig.tight_layout()
rec.figure(
    fig,
    "removal_curves",
    f"{DS}: balanced single-class accuracy of the two classes most hurt by their top-{k} removal, "
    f"as more and more conv3 units are removed, most or least important first (the first "
    f"{len(y_curve)} test images; the analogue of Fig. 2c)",
)

# %% [markdown]
# ## The generator: a DCGAN, dissected and edited (Fig. 4a)
#
# `repro.dcgan` trains the generator; its layer `main.2` (2 · width units at 7 × 7) is the
# dissected layer. The samples are labelled by the toolkit's pinned F-MNIST classifier
# (`repro.sample_quality`, independent of the CNN above); a sample's "segmentation" is its
# foreground labelled with that class. Three sets of codes: ranking, dissection, evaluation.

# %%
start = time.perf_counter()
x_gan = train.x if not P["n_gan_train"] else train.x[: P["n_gan_train"]]
run = train_dcgan(x_gan, iterations=P["gan_iterations"], width=P["gan_width"], seed=seed,
                  settings=Settings(batch_size=P["gan_batch_size"]), progress=False)  # fmt: skip
G = run.generator.eval()
rec.metric("fm_gan_train_seconds", time.perf_counter() - start)
extractor = fmnist_feature_net(device=dev, data_dir=data_dir, progress=False)
clf = extractor.net.eval()
rec.metric("fm_gen_classifier_test_accuracy", 100.0 * extractor.test_accuracy,
           **extractor.provenance())  # fmt: skip
z_rank = uniform_latent(P["n_rank_z"], fork_generator(gen, device=dev))
z_dis = uniform_latent(P["n_dissect_z"], fork_generator(gen, device=dev))
z_eval = uniform_latent(P["n_eval_z"], fork_generator(gen, device=dev))

start = time.perf_counter()
effect = unit_class_effect(G, clf, GEN_LAYER, z_rank)  # (U, K)
causal_rank = rank_units(effect, descending=True)
dis = dissect(G, clf, GEN_LAYER, z_dis, quantile=P["quantile"], foreground=P["foreground"],
              classes=K)  # fmt: skip
dissect_rank = rank_units(dis.iou, descending=True)
rec.metric("fm_gen_rank_seconds", time.perf_counter() - start)
gen_units, gen_k = causal_rank.shape[1], P["gen_k"]
rec.metric("fm_gen_units", gen_units)
rec.metric("fm_gen_k", gen_k)
overlap = sum(len(set(causal_rank[c, :gen_k].tolist()) & set(dissect_rank[c, :gen_k].tolist()))
              for c in range(K)) / (K * gen_k)  # fmt: skip
rec.metric("fm_gen_rank_overlap", overlap)
print(f"class shares of the samples: {[round(float(s), 3) for s in dis.class_share]}; "
      f"top-{gen_k} units shared by the two rankings: {100 * overlap:.0f}%")  # fmt: skip

start = time.perf_counter()
removal = class_removals(G, clf, GEN_LAYER, z_eval, {"causal": causal_rank, "dissect": dissect_rank},
                         gen_k, draws=P["gen_draws"], rng=fork_generator(gen),
                         foreground=P["foreground"])  # fmt: skip
gstats = removal_statistics(removal, K)
rec.metric("fm_gen_removal_seconds", time.perf_counter() - start)
for name, interval in gstats.items():
    record(f"gen_{name}", interval)
gen_table = pd.DataFrame(
    [[NAMES[c], gstats[f"class{c}_share"].estimate,
      *(gstats[f"class{c}_removed_{a}"].format(digits=2) for a in ("causal", "dissect", "random")),
      ", ".join(str(int(u)) for u in removal.units["causal"][c]),
      ", ".join(str(int(u)) for u in removal.units["dissect"][c]),
      float(dis.iou[dissect_rank[c, 0], c])]
     for c in range(K) if f"class{c}_share" in gstats],
    columns=["class", "share of samples", f"removed: top {gen_k} causal", f"removed: top {gen_k} IoU",
             f"removed: {gen_k} random", "causal units", "IoU units", "best IoU"],
)  # fmt: skip
display(gen_table.round(3))
print("pooled over classes: " + "; ".join(
    f"{a} {gstats[f'removed_{a}'].format(100, 1)}% of samples, "
    f"{gstats[f'pixels_removed_{a}'].format(100, 1)}% of class pixels"
    for a in ("causal", "dissect", "random")))  # fmt: skip

# %%
show = [c for c in sorted(range(K), key=lambda c: -float(dis.class_share[c]))
        if dis.class_share[c] > 0][:4]  # fmt: skip
base_pred = removal.outcomes.pred[0]
arms = [("unchanged", None), ("top causal removed", "causal"), ("top IoU removed", "dissect"),
        ("random removed", "random")]  # fmt: skip
fig, axes = plt.subplots(len(show), len(arms), figsize=(3.6 * len(arms), 1.0 * len(show)),
                         squeeze=False)  # fmt: skip
for i, c in enumerate(show):
    idx = (base_pred == c).nonzero().flatten()[:6]
    z_show = z_eval[idx]
    for j, (title, arm) in enumerate(arms):
        if arm is None:
            units = []
        elif arm == "random":
            units = removal.units["random"][c, 0].tolist()  # the first draw
        else:
            units = removal.units[arm][c].tolist()
        with torch.no_grad(), ablate(G, GEN_LAYER, units):
            images = G(z_show).cpu()
        strip = torch.cat(list(images[:, 0]), dim=1) if len(images) else torch.zeros(28, 28)
        axes[i, j].imshow(strip, cmap="gray", vmin=0, vmax=1)
        axes[i, j].set_title(f"{NAMES[c]}: {title}", fontsize=7)
        axes[i, j].axis("off")
fig.tight_layout()
rec.figure(
    fig,
    "generator_unit_removal",
    f"DCGAN on {DS}: samples the classifier calls each of the four most frequent classes "
    f"(rows), unchanged and with that class's top {gen_k} units of {GEN_LAYER} removed "
    f"(ranked by causal effect, by dissection IoU) or {gen_k} random units (the analogue of "
    "Fig. 4b)",
)
seconds = rec.metric("fm_total_seconds", time.perf_counter() - CLOCK)

# %% [markdown]
# ## Paper vs ours
#
# Every paper row is Places365 / LSUN (not run here); the claims are checked on the
# Fashion-MNIST analogue.

# %%
display(rec.comparison(SLUG, scale))
claims = evaluate(load_claims(repro_path(SLUG)), Results.from_results(read_results(out_dir)))
display(pd.DataFrame(claims, columns=["id", "holds", "detail"]))
