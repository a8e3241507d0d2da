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
# # Intriguing properties of neural networks (Szegedy et al., ICLR 2014)
#
# Box-constrained L-BFGS, $\min_r c\,\|r\|_2^2 + \mathrm{loss}_f(x + r, l)$ subject to
# $x + r \in [0, 1]^m$ with a line search over $c$, against the paper's MNIST networks:
#
# 1. Table 1: FC10 (softmax) with weight decay $\lambda = 10^{-4}, 10^{-2}, 1$, FC100-100-10 and
#    FC200-200-10 (sigmoid): training / test error and the average minimal distortion
#    $\sqrt{\sum (x' - x)^2 / n}$ to reach a random wrong label;
# 2. Table 2: the error each network makes on the examples made for another, beside Gaussian
#    noise of stddev 0.1 and 0.3;
# 3. Tables 3-4: the same across networks trained on disjoint halves $P_1$, $P_2$ of the
#    training set, with the examples also amplified to stddev 0.1;
# 4. Section 3: the images that most activate a single unit of a hidden layer against those that
#    most activate a random direction of it.
#
# MNIST rows run on `mnist` when its training split is here, else on `mnist-test-split` (train on
# the first 8,000 MNIST test images, test on the last 2,000; never compared with the paper's
# numbers). Fashion-MNIST runs the same protocol as a stated analogue (free metrics
# `fashion_mnist_<row id>`).

# %%
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path, scale_params
from repro.data import available, load_dataset
from repro.env import fork_generator, forked_global_rng, pick_device, seed_everything
from repro.expected import read_expected
from repro.record import Recorder, read_results
from repro.szegedy_lbfgs import (
    amplify,
    distortion,
    gaussian_noise,
    label_purity,
    lbfgs_attack,
    random_targets,
    sigmoid_mlp,
    softmax_net,
    top_activating,
    weight_decay_groups,
)
from repro.train import predict, train_classifier

SLUG = "szegedy_lbfgs"
P = scale_params(SLUG, scale)
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
print(f"scale={scale} device={dev} params={P}")

# Table 1's networks: builder and per-linear-layer weight decay (the paper's lambda).
SIGMOID_DECAY = [1e-5, 1e-5, 1e-6]
NETWORKS = {
    "fc10_wd1e4": (lambda: softmax_net(), [1e-4]),
    "fc10_wd1e2": (lambda: softmax_net(), [1e-2]),
    "fc10_wd1": (lambda: softmax_net(), [1.0]),
    "fc100_100": (lambda: sigmoid_mlp(100, 100), SIGMOID_DECAY),
    "fc200_200": (lambda: sigmoid_mlp(200, 200), SIGMOID_DECAY),
}
# Tables 3-4: two networks on P1 and one on P2.
SPLIT_NETWORKS = {
    "fc100_100_p1": (lambda: sigmoid_mlp(100, 100), SIGMOID_DECAY, "p1"),
    "fc123_456_p1": (lambda: sigmoid_mlp(123, 456), SIGMOID_DECAY, "p1"),
    "fc100_100_p2": (lambda: sigmoid_mlp(100, 100), SIGMOID_DECAY, "p2"),
}


# %%
def cut(x, y, n):
    """The first `n` examples (0 = all): deterministic, so every model sees the same data."""
    return (x, y) if not n or n >= len(y) else (x[:n], y[:n])


def load(name):
    train, test = (load_dataset(name, s, data_dir=data_dir, device=dev) for s in ("train", "test"))
    return (*cut(train.x, train.y, P["n_train"]), *cut(test.x, test.y, P["n_test"]))


def train(build, decays, x, y, desc, epochs):
    """A fresh network (initialised from a fork of the run's generator), Adam with the paper's
    weight decay per layer, trained with the toolkit's loop."""
    with forked_global_rng(gen):
        model = build().to(dev)
    opt = torch.optim.Adam(weight_decay_groups(model, decays), lr=P["lr"])
    start = time.perf_counter()
    losses = train_classifier(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=P["batch_size"],
        lr=P["lr"],
        optimizer=opt,
        generator=gen,
        desc=desc,
        progress=False,
    )
    print(
        f"{desc}: loss {losses[-1]:.4f} after {epochs} epochs, {time.perf_counter() - start:.1f}s"
    )
    return model.eval()


def error(model, x, y):
    """Error in percent (the paper's unit)."""
    return 100.0 * float((predict(model, x) != y).float().mean())


def attack(model, x, y, desc):
    """Box-constrained L-BFGS towards a random wrong label per image (seeded)."""
    target = random_targets(y, 10, fork_generator(gen))
    start = time.perf_counter()
    result = lbfgs_attack(
        model,
        x,
        target,
        c_init=P["c_init"],
        search_steps=P["search_steps"],
        max_iter=P["max_iter"],
    )
    seconds = time.perf_counter() - start
    d = distortion(x, result.x_adv)
    ok = result.success
    print(
        f"{desc}: target reached for {int(ok.sum())}/{len(y)}, mean distortion "
        f"{float(d[ok].mean()) if ok.any() else float('nan'):.4f}, {seconds:.1f}s"
    )
    return result, d, seconds


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


def put(dataset, row_id, value, **info):
    """An MNIST value is the expected.csv row; Fashion-MNIST's the free metric `fashion_mnist_<id>`."""
    if dataset == "fashion_mnist":
        return rec.metric(f"fashion_mnist_{row_id}", value)
    return rec.row(row_id, value, dataset=dataset, **info)


def prefix(dataset):
    return "fashion_mnist" if dataset == "fashion_mnist" else "mnist"


def put_distortion(dataset, row_id, result, d, **info):
    """The mean distortion over the images whose target was reached (none: recorded as not run)."""
    ok = result.success
    if ok.any():
        return put(dataset, row_id, float(d[ok].mean()), **info)
    if dataset != "fashion_mnist":
        rec.not_run(row_id, "L-BFGS reached no target at this scale")
    return None


# %% [markdown]
# ## Tables 1 and 2: the five networks, their minimal distortion, cross-model errors

# %%
KEPT = {}  # per dataset: what the figures need
for ds in DATASETS:
    t0 = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load(ds)
    x_adv_in, y_adv_in = x_te[: P["n_adv"]], y_te[: P["n_adv"]]
    print(f"{ds}: {len(y_tr)} train / {len(y_te)} test; {len(y_adv_in)} attacked per network")
    info = {"n_train": len(y_tr), "n_test": len(y_te), "n_adv": len(y_adv_in)}

    models, examples = {}, {}
    for name, (build, decays) in NETWORKS.items():
        epochs = P["softmax_epochs"] if name.startswith("fc10") else P["mlp_epochs"]
        model = train(build, decays, x_tr, y_tr, f"{ds} {name}", epochs)
        models[name] = model
        put(ds, f"t1_{name}_train_error", error(model, x_tr, y_tr), **info)
        put(ds, f"t1_{name}_test_error", error(model, x_te, y_te), **info)
        result, d, seconds = attack(model, x_adv_in, y_adv_in, f"{ds} {name}")
        examples[name] = result.x_adv
        put_distortion(ds, f"t1_{name}_distortion", result, d, **info)
        rec.metric(f"{prefix(ds)}_{name}_lbfgs_success", float(result.success.float().mean()))
        rec.metric(f"{prefix(ds)}_{name}_lbfgs_seconds", seconds)

    noise_gen = fork_generator(gen)
    examples["noise01"] = gaussian_noise(x_adv_in, 0.1, noise_gen)
    examples["noise03"] = gaussian_noise(x_adv_in, 0.3, noise_gen)
    for source, x_src in examples.items():
        for target, model in models.items():
            put(ds, f"t2_{source}_to_{target}_error", error(model, x_src, y_adv_in), **info)

    KEPT[ds] = {"models": models, "examples": examples, "x": x_adv_in, "y": y_adv_in}
    KEPT[ds]["test"] = (x_te, y_te)
    rec.metric(f"{prefix(ds)}_tables12_seconds", time.perf_counter() - t0)

    # ## Tables 3 and 4: disjoint halves P1 / P2 of the training images
    if P["tables34"]:
        t0 = time.perf_counter()
        half = len(y_tr) // 2
        parts = {"p1": (x_tr[:half], y_tr[:half]), "p2": (x_tr[half : 2 * half], y_tr[half:])}
        split_models, split_examples = {}, {}
        for name, (build, decays, part) in SPLIT_NETWORKS.items():
            xp, yp = parts[part]
            model = train(build, decays, xp, yp, f"{ds} {name}", P["mlp_epochs"])
            split_models[name] = model
            put(ds, f"t3_{name}_p1_error", error(model, *parts["p1"]), **info)
            put(ds, f"t3_{name}_p2_error", error(model, *parts["p2"]), **info)
            put(ds, f"t3_{name}_test_error", error(model, x_te, y_te), **info)
            result, d, _ = attack(model, x_adv_in, y_adv_in, f"{ds} {name}")
            put_distortion(ds, f"t3_{name}_distortion", result, d, **info)
            split_examples[name] = result.x_adv
            split_examples[f"{name}_amp01"] = amplify(x_adv_in, result.x_adv, 0.1)
        noise_gen = fork_generator(gen)
        split_examples["noise006"] = gaussian_noise(x_adv_in, 0.06, noise_gen)
        split_examples["noise01"] = gaussian_noise(x_adv_in, 0.1, noise_gen)
        for source, x_src in split_examples.items():
            for target, model in split_models.items():
                put(ds, f"t4_{source}_to_{target}_error", error(model, x_src, y_adv_in), **info)
        rec.metric(f"{prefix(ds)}_tables34_seconds", time.perf_counter() - t0)

# %%
if MNIST is None:
    for exp in read_expected(repro_path(SLUG) / "expected.csv"):
        if exp.dataset == "mnist" and not exp.not_run_reason:
            rec.not_run(exp.id, "no MNIST files here (neither mnist nor its test split)")
elif not P["tables34"]:
    for exp in read_expected(repro_path(SLUG) / "expected.csv"):
        if exp.source in ("Table 3", "Table 4"):
            rec.not_run(exp.id, f"Tables 3-4 are not run at scale {scale}")

# %% [markdown]
# ## Table 2 as the paper prints it (first dataset)

# %%
ds = DATASETS[0]
sources = [*NETWORKS, "noise01", "noise03"]
res = read_results(out_dir)
if ds == "fashion_mnist":
    values = {m["name"].removeprefix("fashion_mnist_"): m["value"] for m in res["metrics"]}
else:
    values = {r["id"]: r["value"] for r in res["rows"]}
table2 = pd.DataFrame(
    [[values.get(f"t2_{s}_to_{t}_error") for t in NETWORKS] for s in sources],
    index=sources,
    columns=list(NETWORKS),
)
print(f"{ds}: error (%) of the column network on the examples made for the row network")
display(table2.round(1))

fig, ax = plt.subplots(figsize=(6.5, 4.2))
im = ax.imshow(table2.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=100)
ax.set_xticks(range(len(NETWORKS)), list(NETWORKS), rotation=30, ha="right", fontsize=8)
ax.set_yticks(range(len(sources)), sources, fontsize=8)
for i in range(len(sources)):
    for j in range(len(NETWORKS)):
        v = table2.iloc[i, j]
        ax.text(
            j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="w" if v < 60 else "k"
        )
fig.colorbar(im, ax=ax, label="error (%)")
ax.set_title(f"{ds}: cross-model generalisation (Table 2)", fontsize=9)
fig.tight_layout()
rec.figure(
    fig,
    "table2_transfer",
    f"{ds}: error of each network (columns) on the L-BFGS examples made for each network and on "
    "Gaussian noise of stddev 0.1 / 0.3 (rows), as in Table 2",
)

# %% [markdown]
# ## Adversarial examples (Figure 5's kind): original, L-BFGS example, magnified difference

# %%
kept = KEPT[ds]
x8, adv8 = kept["x"][:8], kept["examples"]["fc100_100"][:8]
model = kept["models"]["fc100_100"]
p_clean, p_adv = predict(model, x8), predict(model, adv8)
fig, axes = plt.subplots(3, 8, figsize=(12, 4.6))
for i in range(min(8, len(x8))):
    diff = (adv8[i, 0] - x8[i, 0]).cpu()
    axes[0, i].imshow(x8[i, 0].cpu(), cmap="gray", vmin=0, vmax=1)
    axes[0, i].set_title(f"pred {int(p_clean[i])}", fontsize=8)
    axes[1, i].imshow(adv8[i, 0].cpu(), cmap="gray", vmin=0, vmax=1)
    axes[1, i].set_title(f"pred {int(p_adv[i])}", fontsize=8)
    scale_ = float(diff.abs().max()) or 1.0
    axes[2, i].imshow(diff, cmap="seismic", vmin=-scale_, vmax=scale_)
    axes[2, i].set_title(f"d={float(distortion(x8[i : i + 1], adv8[i : i + 1])):.3f}", fontsize=8)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle(f"{ds}: FC100-100-10, L-BFGS towards random labels", fontsize=9)
rec.figure(
    fig,
    "lbfgs_examples",
    f"{ds}: test images (top), their box-constrained L-BFGS examples for FC100-100-10 (middle) "
    "and the difference, magnified to its own range (bottom), with the distortion",
)

# %% [markdown]
# ## Section 3: single units against random directions of FC100-100-10's second hidden layer
#
# For each direction $v$ (a unit $e_i$, or a random Gaussian vector), the test images with the
# largest $\langle \phi(x), v \rangle$. The paper's claim is that both select images that share
# a property; we measure it as the label purity of the top images (the fraction that share
# their most common label), averaged over 100 units and 100 random directions.

# %%
for ds in DATASETS:
    model = KEPT[ds]["models"]["fc100_100"]
    x_te, y_te = KEPT[ds]["test"]
    with torch.no_grad():
        phi = torch.cat([model[:5](x_te[i : i + 2000]) for i in range(0, len(x_te), 2000)])
    width = phi.shape[1]
    units = torch.eye(width, device=dev)
    with forked_global_rng(gen):
        random_dirs = torch.randn(width, width).to(dev)
    k = P["purity_top"]
    top_units, top_random = top_activating(phi, units, k), top_activating(phi, random_dirs, k)
    rec.metric(f"{prefix(ds)}_unit_purity", float(label_purity(y_te, top_units).mean()))
    rec.metric(
        f"{prefix(ds)}_random_direction_purity", float(label_purity(y_te, top_random).mean())
    )
    KEPT[ds]["top"] = (top_units, top_random)

ds = DATASETS[0]
x_te, _ = KEPT[ds]["test"]
top_units, top_random = KEPT[ds]["top"]
fig, axes = plt.subplots(8, k, figsize=(k * 1.1, 8 * 1.2))
for r in range(8):
    picks = top_units[r] if r < 4 else top_random[r - 4]
    for j in range(k):
        axes[r, j].imshow(x_te[picks[j], 0].cpu(), cmap="gray", vmin=0, vmax=1)
        axes[r, j].axis("off")
    axes[r, 0].set_title("unit" if r < 4 else "random direction", fontsize=7, loc="left")
fig.suptitle(
    f"{ds}: top images of 4 single units (top) and 4 random directions (bottom)", fontsize=9
)
rec.figure(
    fig,
    "units_vs_directions",
    f"{ds}: the {k} test images that most activate four single units of FC100-100-10's second "
    "hidden layer (rows 1-4) and four random directions of the same layer (rows 5-8), Section 3",
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
