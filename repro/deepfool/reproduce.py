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
# # DeepFool: a simple and accurate method to fool deep neural networks (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016)
#
# Multi-class DeepFool (Algorithm 2, overshoot $\eta = 0.02$) against the paper's two MNIST
# networks, LeNet and FC500-150-10:
#
# 1. Table 1: the robustness $\hat\rho_{adv}(f) = \frac{1}{|D|}\sum_x \|\hat r(x)\|_2 / \|x\|_2$
#    of DeepFool, of FGSM at the smallest $\epsilon$ that misclassifies 90% of the images, and of
#    box-constrained L-BFGS (`repro.szegedy_lbfgs`), with the time each takes per image;
# 2. Table 2: the same in $\ell_\infty$ ($\hat\rho_\infty$, DeepFool with $p = \infty$);
# 3. Section 4.2: 5 extra epochs at half the learning rate on DeepFool's examples of the training
#    images, on FGSM's, or on the clean images (Table 3's test errors), and $\hat\rho_{adv}$ after
#    fine-tuning on DeepFool's examples (Figure 6).
#
# The labels DeepFool must leave are the network's own, $\hat k(x_0)$; the rows' DeepFool and FGSM
# are not clipped to $[0, 1]$ (as in the paper), L-BFGS keeps its box. MNIST rows run on `mnist`
# when its training split is here, else on `mnist-test-split` (train on the first 8,000 MNIST test
# images, test on the last 2,000; never compared with the paper's numbers). Fashion-MNIST runs
# the same protocol as a stated analogue (free metrics `fashion_mnist_<row id>`).

# %%
import copy
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path, scale_params
from repro.data import available, load_dataset
from repro.deepfool import deepfool, deepfool_attack, fc_500_150, fgsm_min_eps, lenet, rho_adv
from repro.env import forked_global_rng, pick_device, seed_everything
from repro.expected import read_expected
from repro.fgsm import fgsm
from repro.record import Recorder, read_results
from repro.szegedy_lbfgs import lbfgs_attack, runner_up
from repro.train import predict, train_classifier

SLUG = "deepfool"
P = scale_params(SLUG, scale)
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
print(f"scale={scale} device={dev} params={P}")
NETWORKS = {"lenet": (lenet, "lenet_epochs"), "fc500_150": (fc_500_150, "fc_epochs")}
OVERSHOOT = 0.02  # Section 4


# %%
def cut(x, y, n):
    """The first `n` examples (0 = all): deterministic, so every model sees the same data."""
    return (x, y) if not n or n >= len(y) else (x[:n], y[:n])


def load(name):
    train, test = (load_dataset(name, s, data_dir=data_dir, device=dev) for s in ("train", "test"))
    return (*cut(train.x, train.y, P["n_train"]), *cut(test.x, test.y, P["n_test"]))


def fit(model, x, y, desc, epochs, lr):
    start = time.perf_counter()
    losses = train_classifier(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=P["batch_size"],
        lr=lr,
        generator=gen,
        desc=desc,
        progress=False,
    )
    print(
        f"{desc}: loss {losses[-1]:.4f} after {epochs} epochs, {time.perf_counter() - start:.1f}s"
    )
    return model.eval()


def error(model, x, y):
    return 100.0 * float((predict(model, x) != y).float().mean())


def timed(fn, *args, **kwargs):
    """fn(*args, **kwargs) and the seconds it took."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


# %% [markdown]
# ## Which MNIST

# %%
if available("mnist", data_dir):
    MNIST = "mnist"
elif available("mnist-test-split", data_dir):
    MNIST = "mnist-test-split"
else:
    MNIST = None
print("MNIST rows run on:", MNIST or "nothing (no MNIST files here)")
DATASETS = [d for d in (MNIST, "fashion_mnist") if d is not None]


def prefix(dataset):
    return "fashion_mnist" if dataset == "fashion_mnist" else "mnist"


def put(dataset, row_id, value, **info):
    """An MNIST value is the expected.csv row; Fashion-MNIST's the free metric `fashion_mnist_<id>`."""
    if dataset == "fashion_mnist":
        return rec.metric(f"fashion_mnist_{row_id}", value)
    return rec.row(row_id, value, dataset=dataset, **info)


# %% [markdown]
# ## Tables 1-3 per dataset and network

# %%
KEPT = {}
for ds in DATASETS:
    x_tr, y_tr, x_te, y_te = load(ds)
    x_ev = x_te[: P["n_eval"]] if P["n_eval"] else x_te
    print(f"{ds}: {len(y_tr)} train / {len(y_te)} test; rho_adv over {len(x_ev)} test images")
    for net, (build, epochs_key) in NETWORKS.items():
        t0 = time.perf_counter()
        info = {"n_train": len(y_tr), "n_test": len(y_te), "n_eval": len(x_ev)}
        with forked_global_rng(gen):
            model = build().to(dev)
        fit(model, x_tr, y_tr, f"{ds} {net}", P[epochs_key], P["lr"])
        put(ds, f"t1_{net}_test_error", error(model, x_te, y_te), **info)
        k_ev = predict(model, x_ev)  # the network's own labels k(x0), as in the paper

        # Table 1: DeepFool (l2, no box), its time per image
        res, secs = timed(deepfool_attack, model, x_ev, k_ev, overshoot=OVERSHOOT,
                          max_iter=P["max_iter"], clip=None)  # fmt: skip
        rho_df = rho_adv(x_ev, res.x_adv)
        put(ds, f"t1_{net}_deepfool_rho", float(rho_df.mean()), **info)
        rec.metric(f"{prefix(ds)}_{net}_deepfool_time_per_image_s", secs / len(x_ev))
        rec.metric(f"{prefix(ds)}_{net}_deepfool_fooled", float(res.fooled.float().mean()))
        rec.metric(f"{prefix(ds)}_{net}_deepfool_iterations", float(res.iterations.float().mean()))
        # Table 2: l_inf DeepFool
        res_inf = deepfool_attack(model, x_ev, k_ev, overshoot=OVERSHOOT, max_iter=P["max_iter"],
                                  norm="linf", clip=None)  # fmt: skip
        put(
            ds,
            f"t2_{net}_deepfool_rho_inf",
            float(rho_adv(x_ev, res_inf.x_adv, "linf").mean()),
            **info,
        )

        # Tables 1-2: FGSM at the smallest eps that misclassifies 90% of the images
        eps = fgsm_min_eps(model, x_ev, k_ev, target_error=0.9, clip=None)
        x_fg, secs = timed(fgsm, model, x_ev, k_ev, eps=eps, clip=None)
        rec.metric(f"{prefix(ds)}_{net}_fgsm_eps90", eps)
        rec.metric(f"{prefix(ds)}_{net}_fgsm_time_per_image_s", secs / len(x_ev))
        put(ds, f"t1_{net}_fgsm_rho", float(rho_adv(x_ev, x_fg).mean()), eps=eps, **info)
        put(
            ds, f"t2_{net}_fgsm_rho_inf", float(rho_adv(x_ev, x_fg, "linf").mean()), eps=eps, **info
        )

        # Table 1: L-BFGS (box-constrained, towards the runner-up class) on the first n_lbfgs
        x_lb, k_lb = x_ev[: P["n_lbfgs"]], k_ev[: P["n_lbfgs"]]
        lb, secs = timed(lbfgs_attack, model, x_lb, runner_up(model, x_lb, k_lb),
                         search_steps=P["lbfgs_search_steps"], max_iter=P["lbfgs_max_iter"])  # fmt: skip
        ok = lb.success
        rec.metric(f"{prefix(ds)}_{net}_lbfgs_success", float(ok.float().mean()))
        rec.metric(f"{prefix(ds)}_{net}_lbfgs_time_per_image_s", secs / len(x_lb))
        if ok.any():
            rho_lb = rho_adv(x_lb[ok], lb.x_adv[ok])
            put(ds, f"t1_{net}_lbfgs_rho", float(rho_lb.mean()), n_lbfgs=len(x_lb), **info)
            same = rho_df[: len(x_lb)][ok]  # DeepFool on the very images L-BFGS succeeded on
            rec.metric(f"{prefix(ds)}_{net}_deepfool_rho_on_lbfgs_images", float(same.mean()))
            rec.metric(f"{prefix(ds)}_{net}_lbfgs_rho_on_lbfgs_images", float(rho_lb.mean()))
        elif ds != "fashion_mnist":
            rec.not_run(f"t1_{net}_lbfgs_rho", "L-BFGS reached no target at this scale")

        # Table 3 and Figure 6: 5 extra epochs at half the learning rate on the perturbed images
        x_ft, y_ft = cut(x_tr, y_tr, P["n_ft"])
        sets = {
            "deepfool": deepfool(model, x_ft, y_ft, overshoot=OVERSHOOT, max_iter=P["max_iter"]),
            "fgsm": fgsm(model, x_ft, y_ft, eps=eps),
            "clean": x_ft,
        }
        finetuned = {}
        for kind, x_set in sets.items():
            tuned = copy.deepcopy(model)
            fit(tuned, x_set, y_ft, f"{ds} {net} fine-tuned on {kind}", P["ft_epochs"], P["lr"] / 2)
            put(
                ds,
                f"t3_{net}_{kind}_finetuned_error",
                error(tuned, x_te, y_te),
                n_ft=len(y_ft),
                **info,
            )
            finetuned[kind] = tuned
        tuned = finetuned["deepfool"]
        after = deepfool_attack(tuned, x_ev, predict(tuned, x_ev), overshoot=OVERSHOOT,
                                max_iter=P["max_iter"], clip=None)  # fmt: skip
        rho_after = float(rho_adv(x_ev, after.x_adv).mean())
        rec.metric(f"{prefix(ds)}_{net}_deepfool_finetuned_rho", rho_after)
        rec.metric(f"{prefix(ds)}_{net}_seconds", time.perf_counter() - t0)
        KEPT[(ds, net)] = {"model": model, "x": x_ev, "adv": res.x_adv, "k": k_ev}

# %%
expected = read_expected(repro_path(SLUG) / "expected.csv")
if MNIST is None:
    for exp in expected:
        if exp.dataset == "mnist" and not exp.not_run_reason:
            rec.not_run(exp.id, "no MNIST files here (neither mnist nor its test split)")

# %% [markdown]
# ## Table 1 as the paper prints it, per dataset

# %%
res = read_results(out_dir)
rows = {r["id"]: r["value"] for r in res["rows"]}
metrics = {m["name"]: m["value"] for m in res["metrics"]}


def value(ds, name):
    return metrics.get(f"fashion_mnist_{name}") if ds == "fashion_mnist" else rows.get(name)


table = pd.DataFrame(
    [
        {
            "dataset": ds,
            "network": net,
            "test error %": value(ds, f"t1_{net}_test_error"),
            "DeepFool rho": value(ds, f"t1_{net}_deepfool_rho"),
            "FGSM rho": value(ds, f"t1_{net}_fgsm_rho"),
            "L-BFGS rho": value(ds, f"t1_{net}_lbfgs_rho"),
            "DeepFool ms/img": 1e3 * metrics[f"{prefix(ds)}_{net}_deepfool_time_per_image_s"],
            "FGSM ms/img": 1e3 * metrics[f"{prefix(ds)}_{net}_fgsm_time_per_image_s"],
            "L-BFGS ms/img": 1e3 * metrics[f"{prefix(ds)}_{net}_lbfgs_time_per_image_s"],
            "DeepFool rho_inf": value(ds, f"t2_{net}_deepfool_rho_inf"),
            "FGSM rho_inf": value(ds, f"t2_{net}_fgsm_rho_inf"),
            "rho after DeepFool fine-tuning": metrics[f"{prefix(ds)}_{net}_deepfool_finetuned_rho"],
        }
        for ds in DATASETS
        for net in NETWORKS
    ]
)
display(table.round(4))

fig, axes = plt.subplots(1, len(DATASETS), figsize=(5.5 * len(DATASETS), 3.4), squeeze=False)
for ax, ds in zip(axes[0], DATASETS, strict=True):
    part = table[table.dataset == ds].set_index("network")
    cols = ["DeepFool rho", "L-BFGS rho", "FGSM rho", "rho after DeepFool fine-tuning"]
    part[cols].plot.bar(ax=ax, rot=0, logy=True)
    ax.set_title(f"{ds}: rho_adv = mean ||r||_2 / ||x||_2", fontsize=9)
    ax.legend(fontsize=7)
fig.tight_layout()
rec.figure(
    fig,
    "rho_adv",
    "rho_adv of DeepFool, L-BFGS and FGSM (smallest eps misclassifying 90%) per network "
    "(Table 1), and DeepFool's rho_adv after 5 epochs of fine-tuning on DeepFool examples (Fig. 6)",
)

# %% [markdown]
# ## DeepFool's perturbations (LeNet, first dataset)

# %%
ds = DATASETS[0]
kept = KEPT[(ds, "lenet")]
x8, adv8 = kept["x"][:8], kept["adv"][:8]
p_adv = predict(kept["model"], adv8)
fig, axes = plt.subplots(3, 8, figsize=(12, 4.6))
for i in range(min(8, len(x8))):
    r = (adv8[i, 0] - x8[i, 0]).cpu()
    axes[0, i].imshow(x8[i, 0].cpu(), cmap="gray", vmin=0, vmax=1)
    axes[0, i].set_title(f"pred {int(kept['k'][i])}", fontsize=8)
    axes[1, i].imshow(adv8[i, 0].clamp(0, 1).cpu(), cmap="gray", vmin=0, vmax=1)
    axes[1, i].set_title(f"pred {int(p_adv[i])}", fontsize=8)
    m = float(r.abs().max()) or 1.0
    axes[2, i].imshow(r, cmap="seismic", vmin=-m, vmax=m)
    axes[2, i].set_title(f"rho={float(rho_adv(x8[i : i + 1], adv8[i : i + 1])):.3f}", fontsize=8)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle(f"{ds}: LeNet, DeepFool (l2, overshoot 0.02)", fontsize=9)
rec.figure(
    fig,
    "deepfool_examples",
    f"{ds}: test images (top), DeepFool's adversarial images for LeNet (middle, shown clipped to "
    "[0, 1]) and the perturbation r (bottom, its own range) with ||r||_2 / ||x||_2",
)

# %% [markdown]
# ## Paper vs ours
#
# Numbers are compared with the paper's only at `full`; at `smoke` and `small` the rows say
# `not_compared` and the claims carry the verdict.

# %%
display(rec.comparison(SLUG, scale))
claims = evaluate(load_claims(repro_path(SLUG)), Results.from_results(read_results(out_dir)))
display(pd.DataFrame(claims, columns=["id", "holds", "detail"]))
