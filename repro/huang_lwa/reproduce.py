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
# # Learning with a Strong Adversary (Huang, Xu, Schuurmans & Szepesvári, arXiv 2015)
#
# Paper: https://arxiv.org/abs/1511.03034 (no official code). Learning with an adversary (LWA)
# trains on
#
# $$\min_\theta \sum_i \max_{\|r^{(i)}\|_2 \le c} \ell\big(g(x_i + r^{(i)}), y_i\big),$$
#
# the inner maximum in closed form from a linearisation: along the loss gradient (Adv_Loss,
# $r^* = c\,\nabla\ell/\|\nabla\ell\|_2$), its sign (Adv_Loss_Sign, Goodfellow et al.'s direction)
# or the softmax Jacobian (Adv_Alpha, Algorithm 1). Table 2: five two-hidden-layer MNIST MLPs at
# $c = 1.5$; the text: Dropout keeps 19.3 % on Adv_Alpha, and LWA improves on Goodfellow's method
# from 84.4 to 86.7 % (Adv_Loss) and from 83.6 to 86.2 % (Adv_Alpha).
#
# This notebook: the five models on MNIST (MNIST-8k where MNIST's training split is absent: the
# test set's first 8,000 images train, the last 2,000 test) and on Fashion-MNIST (c chosen on a
# validation split); each model on its own Adv_Loss, Adv_Alpha and Adv_Loss_Sign sets and on the
# fixed Adv_Loss set from Normal; the robust models through the shared ℓ∞ battery. Tables 3
# (LeNet) and 4 (CIFAR-10) have no verified numbers and are not run.

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
from repro.env import forked_global_rng, pick_device, seed_everything
from repro.expected import read_expected
from repro.huang_lwa import (
    GOODFELLOW_EPS,
    MODELS,
    PAPER_C,
    TwoLayerMLP,
    adv_alpha,
    adv_loss,
    adv_loss_adversary,
    adv_loss_sign,
    choose_c,
    goodfellow_adversary,
    lwa_rep_objective,
)
from repro.record import Recorder, read_results
from repro.robust_eval import Protocol
from repro.robust_eval import evaluate as robust_evaluate
from repro.stats import pack_bits
from repro.train import predict, train_classifier

SLUG = "huang_lwa"
P = scale_params(SLUG, scale)
EXPECTED = read_expected(repro_path(SLUG) / "expected.csv")
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
SETS = {"adv_loss": adv_loss, "adv_alpha": adv_alpha, "adv_loss_sign": adv_loss_sign}
print(f"scale={scale} device={dev} params={P}")

# %% [markdown]
# ## Data
#
# MNIST's rows run on MNIST when both its splits are here; else on `mnist-test-split`, recorded
# as free metrics only (the paper's rows, trained on 50,000 images, are then not run). Fashion-MNIST:
# the first `n_train` training images train, the last `n_val` are the validation split for c.


# %%
def cut(x, y, n):
    return (x, y) if not n or n >= len(y) else (x[:n], y[:n])


SOURCES = {}
if available("mnist", data_dir):
    SOURCES["mnist"] = "mnist"
elif available("mnist-test-split", data_dir):
    SOURCES["mnist"] = "mnist-test-split"
if available("fashion_mnist", data_dir):
    SOURCES["fashion_mnist"] = "fashion_mnist"
if not SOURCES:
    raise ReproError("neither MNIST nor Fashion-MNIST is here: nothing to run")

DATA, VAL = {}, {}
for ds, src in SOURCES.items():
    tr, te = (load_dataset(src, s, data_dir=data_dir, device=dev) for s in ("train", "test"))
    x_tr, y_tr = tr.x, tr.y
    if ds == "fashion_mnist":
        VAL[ds] = (x_tr[-P["n_val"] :], y_tr[-P["n_val"] :])
        x_tr, y_tr = x_tr[: -P["n_val"]], y_tr[: -P["n_val"]]
    DATA[ds] = (*cut(x_tr, y_tr, P["n_train"]), *cut(te.x, te.y, P["n_test"]))
    print(f"{ds} ({src}): {len(DATA[ds][1])} train / {len(DATA[ds][3])} test images")

for row in EXPECTED:
    if row.not_run_reason:
        continue
    if SOURCES.get("mnist") != "mnist":
        rec.not_run(row.id, "MNIST's training split is not here (the paper trains on 50,000 "
                    "images); the MNIST-8k analogue is recorded as metrics mnist_<model>_<set>")  # fmt: skip


# %% [markdown]
# ## Training the five models
#
# Each model starts from weights drawn from one seed per (dataset, model) and sees the same batch
# order; Adam, `epochs`, batch `batch_size`. Normal and Dropout: cross-entropy. Goodfellow's
# method: ½ CE(x) + ½ CE(FGSM(x)), ε = 0.25 · c / 1.5 (0.25 on MNIST). LWA: CE at Adv_Loss(x)
# (Algorithm 2, the perturbed loss only). LWA_Rep: the same at the first hidden layer.


# %%
def build(spec):
    with forked_global_rng(gen):
        return TwoLayerMLP(spec.h1, spec.h2, dropout=spec.dropout).to(dev)


def train(spec, x, y, c, order_seed):
    """Train one of Table 2's models; return it (eval mode), its losses and wall s/epoch."""
    model = build(spec)
    kwargs = {}
    if spec.method == "goodfellow":
        kwargs = {
            "adversary": goodfellow_adversary(GOODFELLOW_EPS * c / PAPER_C),
            "adv_weight": 0.5,
        }
    elif spec.method == "lwa":
        kwargs = {"adversary": adv_loss_adversary(c), "adv_weight": 1.0}
    elif spec.method == "lwa_rep":
        kwargs = {"objective": lwa_rep_objective(c)}
    start = time.perf_counter()
    losses = train_classifier(model, x, y, epochs=P["epochs"], batch_size=P["batch_size"],
                              lr=P["lr"], generator=torch.Generator().manual_seed(order_seed),
                              progress=False, desc=spec.name, **kwargs)  # fmt: skip
    return model.eval(), losses, (time.perf_counter() - start) / max(P["epochs"], 1)


def correct_on(model, x, y, attack=None, batch=1000):
    """Per image: is the (perturbed) image classified correctly? (the paper's count)"""
    out = []
    for i in range(0, len(y), batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        out.append(predict(model, xb if attack is None else attack(model, xb, yb)) == yb)
    return torch.cat(out)


def pct(ok):
    return 100.0 * float(ok.float().mean())


C = {}
# Fashion-MNIST's c: the smallest grid value that leaves a Normal model (trained on the training
# part) <= broken_below % on the validation split under Adv_Loss.
if "fashion_mnist" in DATA:
    x_tr, y_tr = DATA["fashion_mnist"][:2]
    x_val, y_val = VAL["fashion_mnist"]
    probe, _, _ = train(MODELS[0], x_tr, y_tr, PAPER_C, seed + 1000)
    c_f, measured = choose_c(
        lambda c: pct(correct_on(probe, x_val, y_val, lambda m, x, y: adv_loss(m, x, y, c=c))),
        tuple(P["c_grid"]), broken_below=P["broken_below"],
    )  # fmt: skip
    C["fashion_mnist"] = c_f
    for c, acc in measured.items():
        rec.metric(f"fashion_mnist_c_selection.normal_val_adv_loss_c{round(100 * c):03d}", acc,
                   c=c, n_val=len(y_val))  # fmt: skip
    rec.metric("fashion_mnist_c", c_f, grid=P["c_grid"], broken_below=P["broken_below"])
    print(f"Fashion-MNIST c = {c_f} (Normal's validation accuracy under Adv_Loss: {measured})")
if "mnist" in DATA:
    C["mnist"] = PAPER_C
    rec.metric("mnist_c", PAPER_C, note="the paper's c")

NETS, CURVES, COST = {}, {}, {}
for ds, (x_tr, y_tr, _, _) in DATA.items():
    for spec in MODELS:
        order_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        model, losses, epoch_s = train(spec, x_tr, y_tr, C[ds], order_seed)
        NETS[(ds, spec.name)], CURVES[(ds, spec.name)] = model, losses
        COST[(ds, spec.name)] = epoch_s
        rec.metric(f"cost.{ds}_{spec.name}.epoch_seconds", epoch_s, n_train=len(y_tr),
                   epochs=P["epochs"], widths=f"{spec.h1}x{spec.h2}")  # fmt: skip
        print(f"{ds} {spec.name} ({spec.h1}x{spec.h2}): {epoch_s:.2f} s/epoch, "
              f"losses {[round(v, 3) for v in losses[-3:]]}")  # fmt: skip

# %% [markdown]
# ## Table 2: each model on its own adversarial sets, and on the fixed set from Normal
#
# Every set at the dataset's c in ℓ2 (unclipped, as the paper). The fixed set is Adv_Loss
# generated against Normal, fed to every model.

# %%
ACC = {}
for ds, (_, _, x_te, y_te) in DATA.items():
    c = C[ds]
    normal = NETS[(ds, "normal")]
    fixed = torch.cat([adv_loss(normal, x_te[i : i + 1000], y_te[i : i + 1000], c=c)
                       for i in range(0, len(y_te), 1000)])  # fmt: skip
    for spec in MODELS:
        model = NETS[(ds, spec.name)]
        results = {
            "clean": correct_on(model, x_te, y_te),
            "fixed_normal": correct_on(model, fixed, y_te),
        }
        for set_name, fn in SETS.items():
            results[set_name] = correct_on(model, x_te, y_te,
                                           lambda m, x, y, fn=fn, c=c: fn(m, x, y, c=c))  # fmt: skip
        for set_name, ok in results.items():
            ACC[(ds, spec.name, set_name)] = pct(ok)
            info = {"dataset": SOURCES[ds], "c": c, "n": len(ok), "correct": pack_bits(ok)}
            rec.metric(f"{ds}_{spec.name}_{set_name}", pct(ok), **info)
            row_id = f"t2_mnist_{spec.name}_{set_name}"
            if ds == "mnist" and SOURCES[ds] == "mnist" and any(r.id == row_id for r in EXPECTED):
                rec.row(row_id, pct(ok), **info)
    table = pd.DataFrame({s.name: {k: ACC[(ds, s.name, k)] for k in
                                   ("clean", "adv_loss", "adv_alpha", "adv_loss_sign", "fixed_normal")}
                          for s in MODELS}).T.round(1)  # fmt: skip
    print(f"{SOURCES[ds]}, c = {c}")
    display(table)

# %% [markdown]
# ## The shared battery (ℓ∞) on the robust models
#
# `repro.robust_eval` on the first `n_robust` test images at ε = `robust_eps` (ℓ∞): FGSM,
# PGD-20, PGD-100 and CW-loss PGD-100 with restarts, AutoAttack; `worst` is per image the worst
# of these. The paper's attack (Adv_Loss at c, ℓ2) is recorded beside it: it is another threat
# model, so its "gap" to the ℓ∞ worst case says how differently the two balls rank the models,
# not that one evaluation overestimates.

# %%
REPORTS = {}
for ds, (_, y_tr, x_te, y_te) in DATA.items():
    if ds not in P["battery_datasets"]:
        continue
    x_rb, y_rb = cut(x_te, y_te, P["n_robust"])
    protocol = Protocol(P["robust_eps"], restarts=P["robust_restarts"],
                        autoattack=P["robust_autoattack"], seed=seed)  # fmt: skip
    for model_name in P["battery_models"]:
        start = time.perf_counter()
        report = robust_evaluate(NETS[(ds, model_name)], x_rb, y_rb, protocol,
                                 paper_attack=lambda m, x, y, c=C[ds]: adv_loss(m, x, y, c=c),
                                 progress=False, desc=f"{ds} {model_name}")  # fmt: skip
        report.record(rec, f"{ds}_{model_name}", dataset=SOURCES[ds], n_train=len(y_tr),
                      epochs=P["epochs"], paper_attack=f"Adv_Loss l2 c={C[ds]}")  # fmt: skip
        REPORTS[f"{ds}_{model_name}"] = report
        print(f"{ds} {model_name} ({time.perf_counter() - start:.0f} s): "
              + ", ".join(f"{r['attack']} {r['accuracy_pct']:.1f}" for r in report.rows()))  # fmt: skip

# %% [markdown]
# ## Figures

# %%
set_order = ["clean", "adv_loss", "adv_alpha", "adv_loss_sign", "fixed_normal"]
fig, axes = plt.subplots(1, len(DATA), figsize=(6.5 * len(DATA), 3.8), squeeze=False)
paper = {r.id: r.paper for r in EXPECTED}
for ax, ds in zip(axes[0], DATA, strict=True):
    width = 0.8 / len(MODELS)
    for i, spec in enumerate(MODELS):
        ax.bar([j + i * width for j in range(len(set_order))],
               [ACC[(ds, spec.name, s)] for s in set_order], width,
               label=f"{spec.name} {spec.h1}x{spec.h2}")  # fmt: skip
    if ds == "mnist":
        for rid, value in paper.items():
            model_name, set_name = rid.removeprefix("t2_mnist_").split("_", 1)
            i = [s.name for s in MODELS].index(model_name)
            j = set_order.index(set_name)
            ax.plot(j + i * width, value, "k*", ms=8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(set_order))], set_order, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{SOURCES[ds]}, l2 c = {C[ds]} (stars: the paper's text, MNIST 50k)", fontsize=9)
    ax.legend(fontsize=6)
fig.tight_layout()
rec.figure(fig, "table2", "Table 2's five MLPs on each adversarial set (generated against each "
           "model itself; fixed_normal: Adv_Loss from Normal); stars: the paper's numbers")  # fmt: skip

order = ["clean", "paper", "fgsm", "pgd20", "pgd100", "cw_pgd", "autoattack", "worst"]
fig, ax = plt.subplots(figsize=(10, 3.6))
width = 0.8 / max(len(REPORTS), 1)
for i, (rname, report) in enumerate(REPORTS.items()):
    ax.bar([j + i * width for j in range(len(order))],
           [report.accuracy(a) if a in report.correct else 0.0 for a in order], width,
           label=rname)  # fmt: skip
ax.set_xticks([j + 0.4 - width / 2 for j in range(len(order))],
              ["clean", "Adv_Loss\n(l2, paper)", "FGSM", "PGD-20", "PGD-100", "CW-PGD",
               "AutoAttack /\nAPGD", "worst"], fontsize=8)  # fmt: skip
ax.set_ylabel("accuracy (%), clean required")
ax.legend(fontsize=6)
fig.tight_layout()
rec.figure(fig, "battery", f"robust models through the shared battery (l_inf eps "
           f"{P['robust_eps']}); 'Adv_Loss' is the paper's l2 attack at c")  # fmt: skip

fig, ax = plt.subplots(figsize=(7, 3.2))
for (ds, model_name), curve in CURVES.items():
    ax.plot(range(1, len(curve) + 1), curve, "-" if ds == "mnist" else "--",
            label=f"{ds} {model_name}")  # fmt: skip
ax.set_xlabel("epoch")
ax.set_ylabel("training loss")
ax.legend(fontsize=6, ncol=2)
fig.tight_layout()
rec.figure(fig, "training_loss", "mean training loss per epoch (LWA's is the perturbed loss)")

# %% [markdown]
# ## Cost, the paper vs ours, and the claims

# %%
display(pd.DataFrame([{"dataset": ds, "model": m, "s/epoch": round(v, 2)}
                      for (ds, m), v in COST.items()]))  # fmt: skip
display(pd.DataFrame([{"model": k, **{r["attack"]: round(r["accuracy_pct"], 1) for r in v.rows()}}
                      for k, v in REPORTS.items()]))  # fmt: skip
display(rec.comparison(SLUG, scale))
claims = evaluate(load_claims(repro_path(SLUG)), Results.from_results(read_results(out_dir)))
display(pd.DataFrame(claims, columns=["id", "holds", "detail"]))
