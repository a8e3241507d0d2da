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
# # Delving into Transferable Adversarial Examples and Black-box Attacks (Liu, Chen, Liu & Song, ICLR 2017)
#
# Adversarial examples made on one model (white box) and scored on the others (black box):
#
# 1. Table 1: non-targeted examples of the optimization-based attack (Adam on
#    $-\log(1 - J_y(x^*))$, $\lambda = 0$): top-1 accuracy of every model on them;
# 2. Table 2: targeted examples ($-\log J_{y^*}(x^*)$): how often each model outputs the target;
# 3. Tables 3-4: the ensemble attack on all models but one,
#    $-\log\big((\sum_i \alpha_i J_i(x^*))_{y^*}\big)$, scored on the held-out model too;
# 4. the fast gradient (FG) and fast gradient sign (FGS) baselines, and Gaussian noise.
#
# The paper's five ImageNet models are not here: five Fashion-MNIST networks of different
# architectures stand in for them (its rows of `expected.csv` are recorded as not run). As in the
# paper, the optimization attack has no distortion budget (Adam, $\lambda = 0$, a fixed learning
# rate and number of steps); FG, FGS and the noise control are matched to the distortion (RMSD)
# it reaches.

# %%
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path, scale_params
from repro.data import available, load_dataset
from repro.env import fork_generator, forked_global_rng, pick_device, seed_everything
from repro.expected import read_expected
from repro.liu_transfer import (
    far_targets,
    fast_gradient,
    gaussian_like,
    matching_rate,
    optimization_attack,
    rmsd,
    transfer_models,
)
from repro.record import Recorder, read_results
from repro.train import accuracy, predict, train_classifier

SLUG = "liu_transfer"
P = scale_params(SLUG, scale)
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
print(f"scale={scale} device={dev} params={P}")
BUDGET = P["rmsd"] or None  # 0: no budget (the paper's protocol)

# %%
for exp in read_expected(repro_path(SLUG) / "expected.csv"):
    if not exp.not_run_reason:
        rec.not_run(exp.id, "ImageNet is not available here")
DS = "fashion_mnist"
if not available(DS, data_dir):
    raise ReproError("Fashion-MNIST is not here: apt-get install dataset-fashion-mnist")
train = load_dataset(DS, "train", data_dir=data_dir, device=dev)
test = load_dataset(DS, "test", data_dir=data_dir, device=dev)
n_train = P["n_train"] or len(train)
x_tr, y_tr = train.x[:n_train], train.y[:n_train]

# %% [markdown]
# ## The five models

# %%
with forked_global_rng(gen):
    models = {name: m.to(dev) for name, m in transfer_models().items()}
MODELS = list(models)
for name, model in models.items():
    start = time.perf_counter()
    train_classifier(model, x_tr, y_tr, epochs=P["epochs"], batch_size=P["batch_size"],
                     lr=P["lr_train"], generator=gen, desc=name, progress=False)  # fmt: skip
    model.eval()
    acc = 100.0 * accuracy(model, test.x, test.y)
    rec.metric(f"{name}_test_accuracy", acc)
    print(f"{name}: test accuracy {acc:.1f}%, {time.perf_counter() - start:.1f}s")

# The images every model classifies correctly (the paper's 100 ImageNet images), and far targets.
with torch.no_grad():
    right = torch.stack([predict(m, test.x) == test.y for m in models.values()]).all(dim=0)
idx = torch.nonzero(right).squeeze(1)[: P["n_images"]]
x, y = test.x[idx], test.y[idx]
t = far_targets(y)
print(f"{len(idx)} test images classified correctly by all five models; targets (y + 5) mod 10")
rec.metric("n_images", len(idx))


# %%
def score(prefix, x_adv):
    """Accuracy (non-targeted) and target matching (targeted) of every model on x_adv, in %."""
    for target, model in models.items():
        rec.metric(f"{prefix}_to_{target}_accuracy", 100.0 * accuracy(model, x_adv, y))
        rec.metric(f"{prefix}_to_{target}_matching", 100.0 * matching_rate(model, x_adv, t))
    rec.metric(f"{prefix}_rmsd255", 255.0 * float(rmsd(x, x_adv).mean()))


timings = {}
start = time.perf_counter()
reached = {}  # the mean RMSD the single-model optimization attack reached, per source and kind
for source, model in models.items():
    for targeted, kind in ((False, "untargeted"), (True, "targeted")):
        labels = t if targeted else y
        x_opt = optimization_attack(model, x, labels, targeted=targeted, steps=P["steps"],
                                    lr=P["lr"], rmsd_budget=BUDGET)  # fmt: skip
        score(f"opt_{kind}_{source}", x_opt)
        reached[(source, kind)] = float(rmsd(x, x_opt).mean())
        for norm, name in (("l2", "fg"), ("linf", "fgs")):
            size = reached[(source, kind)]  # FG / FGS at the distortion the optimization reached
            eps = size * float(x[0].numel()) ** 0.5 if norm == "l2" else size
            x_fg = fast_gradient(model, x, labels, eps=eps, norm=norm, targeted=targeted)
            score(f"{name}_{kind}_{source}", x_fg)
timings["single"] = time.perf_counter() - start

start = time.perf_counter()
for held in MODELS:
    members = [models[m] for m in MODELS if m != held]
    for targeted, kind in ((False, "untargeted"), (True, "targeted")):
        x_ens = optimization_attack(members, x, t if targeted else y, targeted=targeted,
                                    steps=P["steps"], lr=P["lr_ensemble"], rmsd_budget=BUDGET)  # fmt: skip
        score(f"ens_{kind}_wo_{held}", x_ens)
timings["ensemble"] = time.perf_counter() - start
noise_rmsd = sum(v for (_, kind), v in reached.items() if kind == "targeted") / len(models)
score("noise", gaussian_like(x, noise_rmsd, fork_generator(gen)))
for k, v in timings.items():
    rec.metric(f"{k}_attacks_seconds", v)
print({k: round(v, 1) for k, v in timings.items()})

# %% [markdown]
# ## The transfer matrices

# %%
M = {m["name"]: m["value"] for m in read_results(out_dir)["metrics"]}


def matrix(pattern, rows, label):
    return pd.DataFrame(
        [[M[pattern.format(s=s, t=tgt)] for tgt in MODELS] for s in rows],
        index=[label.format(s=s) for s in rows],
        columns=MODELS,
    )


tables = {
    "Table 1: non-targeted, single model (accuracy %)": matrix(
        "opt_untargeted_{s}_to_{t}_accuracy", MODELS, "{s}"
    ),
    "Table 2: targeted, single model (matching %)": matrix(
        "opt_targeted_{s}_to_{t}_matching", MODELS, "{s}"
    ),
    "Table 3: targeted, ensemble without the row's model (matching %)": matrix(
        "ens_targeted_wo_{s}_to_{t}_matching", MODELS, "all but {s}"
    ),
    "Table 4: non-targeted, ensemble without the row's model (accuracy %)": matrix(
        "ens_untargeted_wo_{s}_to_{t}_accuracy", MODELS, "all but {s}"
    ),
}
for name, table in tables.items():
    print(name)
    display(table.round(0))


def off_diagonal_mean(pattern):
    values = [M[pattern.format(s=s, t=tg)] for s in MODELS for tg in MODELS if s != tg]
    return sum(values) / len(values)


def mean_over_models(prefix):
    return sum(M[prefix.format(s=s)] for s in MODELS) / len(MODELS)


summary = [
    {
        "attack": attack,
        "accuracy of the other models (non-targeted) %": off_diagonal_mean(
            f"{attack}_untargeted_{{s}}_to_{{t}}_accuracy"
        ),
        "matching on the other models (targeted) %": off_diagonal_mean(
            f"{attack}_targeted_{{s}}_to_{{t}}_matching"
        ),
        "RMSD x255 non-targeted": mean_over_models(f"{attack}_untargeted_{{s}}_rmsd255"),
        "RMSD x255 targeted": mean_over_models(f"{attack}_targeted_{{s}}_rmsd255"),
    }
    for attack in ("opt", "fg", "fgs")
]
summary.append(
    {
        "attack": "ensemble (on the held-out model)",
        "accuracy of the other models (non-targeted) %": mean_over_models(
            "ens_untargeted_wo_{s}_to_{s}_accuracy"
        ),
        "matching on the other models (targeted) %": mean_over_models(
            "ens_targeted_wo_{s}_to_{s}_matching"
        ),
        "RMSD x255 non-targeted": mean_over_models("ens_untargeted_wo_{s}_rmsd255"),
        "RMSD x255 targeted": mean_over_models("ens_targeted_wo_{s}_rmsd255"),
    }
)
summary.append(
    {
        "attack": "Gaussian noise",
        "accuracy of the other models (non-targeted) %": mean_over_models("noise_to_{s}_accuracy"),
        "matching on the other models (targeted) %": mean_over_models("noise_to_{s}_matching"),
        "RMSD x255 targeted": M["noise_rmsd255"],
    }
)
print("means over the 20 off-diagonal (source, target) pairs; RMSD on the [0, 255] scale")
display(pd.DataFrame(summary).round(1))

fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
for ax, (name, table) in zip(axes, tables.items(), strict=True):
    ax.imshow(table.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=100)
    ax.set_xticks(range(len(MODELS)), MODELS, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(MODELS)), table.index, fontsize=8)
    for i in range(len(MODELS)):
        for j in range(len(MODELS)):
            v = table.iloc[i, j]
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8,
                    color="w" if v < 60 else "k")  # fmt: skip
    ax.set_title(name.replace(" (", "\n("), fontsize=9)
    ax.set_xlabel("tested on", fontsize=8)
fig.tight_layout()
rec.figure(
    fig,
    "transfer_matrices",
    f"{DS}: the four transfer matrices (Tables 1-4's protocol; the optimization attack, "
    f"{P['steps']} Adam steps): accuracy for non-targeted, target-matching rate for targeted "
    "examples; rows are the model (or ensemble) the examples were made on",
)

# %% [markdown]
# ## Examples: targeted, single model against ensemble

# %%
held = MODELS[-1]
members = [models[m] for m in MODELS if m != held]
x6, t6 = x[:6], t[:6]
single = optimization_attack(models[MODELS[0]], x6, t6, targeted=True, steps=P["steps"],
                             lr=P["lr"], rmsd_budget=BUDGET)  # fmt: skip
ens = optimization_attack(members, x6, t6, targeted=True, steps=P["steps"], lr=P["lr_ensemble"],
                          rmsd_budget=BUDGET)  # fmt: skip
fig, axes = plt.subplots(3, len(x6), figsize=(2 * len(x6), 6.4))
for i in range(len(x6)):
    for row, (img, title) in enumerate(
        (
            (x6[i], f"label {int(y[i])}, target {int(t6[i])}"),
            (
                single[i],
                f"{MODELS[0]}: {held} says {int(predict(models[held], single[i : i + 1]))}",
            ),
            (ens[i], f"ensemble: {held} says {int(predict(models[held], ens[i : i + 1]))}"),
        )
    ):
        axes[row, i].imshow(img[0].cpu(), cmap="gray", vmin=0, vmax=1)
        axes[row, i].set_title(title, fontsize=7)
        axes[row, i].axis("off")
fig.tight_layout()
rec.figure(
    fig,
    "targeted_examples",
    f"{DS}: test images (top), targeted examples made on {MODELS[0]} alone (middle) and on the "
    f"ensemble without {held} (bottom), with what the held-out {held} predicts",
)

# %% [markdown]
# ## Paper vs ours
#
# Every paper row is ImageNet (not run here); the claims are checked on the Fashion-MNIST
# analogue.

# %%
display(rec.comparison(SLUG, scale))
claims = evaluate(load_claims(repro_path(SLUG)), Results.from_results(read_results(out_dir)))
display(pd.DataFrame(claims, columns=["id", "holds", "detail"]))
