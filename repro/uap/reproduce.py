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
# # Universal adversarial perturbations (Moosavi-Dezfooli, Fawzi, Fawzi & Frossard, CVPR 2017)
#
# Algorithm 1: one perturbation $v$, $\|v\|_p \le \xi$, built from DeepFool's minimal
# perturbations of the images of a set $X$ that $v$ does not fool yet, projected on the
# $\ell_p$ ball, until the fooling rate $P(\hat k(x + v) \ne \hat k(x))$ on $X$ reaches
# $1 - \delta$ ($\delta = 0.2$). The paper's numbers are on ILSVRC 2012 (not available here: every
# row of `expected.csv` is recorded as not run); the same protocol runs on Fashion-MNIST with
# three networks (two fully connected, one convolutional), as free metrics:
#
# 1. Table 1's protocol: the fooling rate on $X$ and on held-out test images, per network;
# 2. Figure 8's control: a random perturbation of the same norm;
# 3. Table 2: the perturbation computed for one network, the fooling rate on another;
# 4. Figure 6: the fooling rate against $|X|$, and against $\xi$; an $\ell_2$ perturbation;
# 5. the perturbations as pictures.

# %%
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path, scale_params
from repro.data import available, load_dataset
from repro.deepfool import fc_500_150
from repro.env import fork_generator, forked_global_rng, pick_device, seed_everything
from repro.expected import read_expected
from repro.record import Recorder, read_results
from repro.train import predict, train_classifier
from repro.uap import (
    fc_300_100,
    fooling_rate,
    random_perturbation,
    strided_cnn,
    universal_perturbation,
)

SLUG = "uap"
P = scale_params(SLUG, scale)
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
print(f"scale={scale} device={dev} params={P}")
NETWORKS = {
    "fc500_150": (fc_500_150, "fc_epochs"),
    "fc300_100": (fc_300_100, "fc_epochs"),
    "strided_cnn": (strided_cnn, "cnn_epochs"),
}
XI = P["xi"]

# %%
for exp in read_expected(repro_path(SLUG) / "expected.csv"):
    if not exp.not_run_reason:
        rec.not_run(exp.id, "ILSVRC 2012 is not available here")
DS = "fashion_mnist"
if not available(DS, data_dir):
    raise ReproError("Fashion-MNIST is not here: apt-get install dataset-fashion-mnist")
train = load_dataset(DS, "train", data_dir=data_dir, device=dev)
test = load_dataset(DS, "test", data_dir=data_dir, device=dev)
n_train = P["n_train"] or len(train)
x_tr, y_tr = train.x[:n_train], train.y[:n_train]
x_ev = test.x[: P["n_eval"]] if P["n_eval"] else test.x
y_ev = test.y[: len(x_ev)]
X = x_tr[: P["n_x"]]
print(f"{DS}: {len(y_tr)} train, X = first {len(X)} of them, {len(x_ev)} test images")


def fit(build, epochs, desc):
    with forked_global_rng(gen):
        model = build().to(dev)
    start = time.perf_counter()
    losses = train_classifier(model, x_tr, y_tr, epochs=epochs, batch_size=P["batch_size"],
                              lr=P["lr"], generator=gen, desc=desc, progress=False)  # fmt: skip
    print(f"{desc}: loss {losses[-1]:.4f}, {time.perf_counter() - start:.1f}s")
    return model.eval()


def uap(model, x_set, xi, norm, desc):
    start = time.perf_counter()
    result = universal_perturbation(model, x_set, xi=xi, norm=norm, delta=P["delta"],
                                    max_passes=P["max_passes"], generator=fork_generator(gen))  # fmt: skip
    seconds = time.perf_counter() - start
    history = [round(h, 3) for h in result.fooling_history]
    print(f"{desc}: fooling on X per pass {history}, {result.updates} updates, {seconds:.1f}s")
    return result, seconds


# %% [markdown]
# ## The networks

# %%
models = {}
for net, (build, key) in NETWORKS.items():
    models[net] = fit(build, P[key], f"{DS} {net}")
    accuracy = float((predict(models[net], x_ev) == y_ev).float().mean())
    rec.metric(f"{net}_test_accuracy", 100.0 * accuracy)

# %% [markdown]
# ## Tables 1-2 and Figure 8: one perturbation per network at xi, on X and held out, across
# networks, against random noise of the same norm

# %%
perturbations = {}
for net, model in models.items():
    result, seconds = uap(model, X, XI, "linf", f"{net} xi={XI}")
    perturbations[net] = result.v
    rec.metric(f"{net}_fooling_on_x", 100.0 * result.fooling_history[-1])
    rec.metric(f"{net}_uap_seconds", seconds)
    rec.metric(f"{net}_uap_passes", len(result.fooling_history))
random_v = random_perturbation(X[0], XI, "linf", fork_generator(gen))
for target, model in models.items():
    rec.metric(f"random_to_{target}_fooling", 100.0 * fooling_rate(model, x_ev, random_v))
    for source, v in perturbations.items():
        rec.metric(f"{source}_to_{target}_fooling", 100.0 * fooling_rate(model, x_ev, v))

# %%
res = read_results(out_dir)
M = {m["name"]: m["value"] for m in res["metrics"]}
sources = [*NETWORKS, "random"]
table2 = pd.DataFrame(
    [[M[f"{s}_to_{t}_fooling"] for t in NETWORKS] for s in sources],
    index=[f"computed for {s}" for s in sources],
    columns=[f"tested on {t}" for t in NETWORKS],
)
print(f"test fooling rate (%), l_inf xi = {XI}")
display(table2.round(1))
fig, ax = plt.subplots(figsize=(5.5, 3.6))
im = ax.imshow(table2.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=100)
ax.set_xticks(range(len(NETWORKS)), list(NETWORKS), fontsize=8)
ax.set_yticks(range(len(sources)), sources, fontsize=8)
for i in range(len(sources)):
    for j in range(len(NETWORKS)):
        v = table2.iloc[i, j]
        ax.text(
            j, i, f"{v:.0f}", ha="center", va="center", fontsize=8, color="w" if v < 60 else "k"
        )
fig.colorbar(im, ax=ax, label="fooling rate (%)")
ax.set_xlabel("tested on")
ax.set_ylabel("computed for")
ax.set_title(f"{DS}: universal perturbations across networks (l_inf {XI})", fontsize=9)
fig.tight_layout()
rec.figure(
    fig,
    "cross_model_fooling",
    f"{DS}: test fooling rate of the universal perturbation computed for each network (rows) on "
    f"each network (columns), l_inf xi = {XI}, with a random +-xi perturbation as the last row "
    "(Table 2 and Figure 8's control)",
)

# %% [markdown]
# ## Figure 6: the fooling rate against |X| and against xi (FC500-150-10)

# %%
main = "fc500_150"
model = models[main]
for size in P["x_sweep"]:
    if size == len(X):
        v = perturbations[main]
    else:
        v = uap(model, x_tr[:size], XI, "linf", f"{main} |X|={size}")[0].v
    rec.metric(f"{main}_size{size}_fooling", 100.0 * fooling_rate(model, x_ev, v))
for xi in P["xi_sweep"]:
    v = perturbations[main] if xi == XI else uap(model, X, xi, "linf", f"{main} xi={xi}")[0].v
    rec.metric(f"{main}_xi{xi}_fooling", 100.0 * fooling_rate(model, x_ev, v))
    rnd = random_perturbation(X[0], xi, "linf", fork_generator(gen))
    rec.metric(f"{main}_xi{xi}_random_fooling", 100.0 * fooling_rate(model, x_ev, rnd))
result_l2, _ = uap(model, X, P["l2_xi"], "l2", f"{main} l2 xi={P['l2_xi']}")
rec.metric(f"{main}_l2_fooling", 100.0 * fooling_rate(model, x_ev, result_l2.v))
rnd = random_perturbation(X[0], P["l2_xi"], "l2", fork_generator(gen))
rec.metric(f"{main}_l2_random_fooling", 100.0 * fooling_rate(model, x_ev, rnd))

res = read_results(out_dir)
M = {m["name"]: m["value"] for m in res["metrics"]}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
sizes = P["x_sweep"]
axes[0].plot(sizes, [M[f"{main}_size{s}_fooling"] for s in sizes], "o-")
axes[0].set_xlabel("|X|")
axes[0].set_ylabel("test fooling rate (%)")
axes[0].set_title(f"{main}: fooling rate vs |X| (l_inf {XI}; Figure 6)", fontsize=9)
xis = P["xi_sweep"]
axes[1].plot(xis, [M[f"{main}_xi{x}_fooling"] for x in xis], "o-", label="universal")
axes[1].plot(xis, [M[f"{main}_xi{x}_random_fooling"] for x in xis], "s--", label="random +-xi")
axes[1].set_xlabel("xi (l_inf)")
axes[1].set_title(f"{main}: fooling rate vs xi (Figure 8's comparison)", fontsize=9)
axes[1].legend(fontsize=8)
fig.tight_layout()
rec.figure(
    fig,
    "fooling_vs_x_and_xi",
    f"{DS}, {main}: test fooling rate of the universal perturbation against the size of X "
    "(left, Figure 6) and against the radius xi, beside random perturbations of the same norm "
    "(right, Figure 8)",
)

# %% [markdown]
# ## The perturbations as pictures (Figure 4's kind)

# %%
shown = {**{f"{n} (l_inf {XI})": v for n, v in perturbations.items()}}
shown[f"{main} (l2 {P['l2_xi']})"] = result_l2.v
fig, axes = plt.subplots(2, len(shown), figsize=(2.6 * len(shown), 5.2))
example = x_ev[0]
for j, (name, v) in enumerate(shown.items()):
    m = float(v.abs().max()) or 1.0
    axes[0, j].imshow(v[0].cpu(), cmap="seismic", vmin=-m, vmax=m)
    axes[0, j].set_title(name, fontsize=8)
    axes[1, j].imshow((example + v).clamp(0, 1)[0].cpu(), cmap="gray", vmin=0, vmax=1)
    axes[1, j].set_title("a test image + v", fontsize=8)
for ax in axes.flat:
    ax.axis("off")
fig.tight_layout()
rec.figure(
    fig,
    "perturbations",
    f"{DS}: the universal perturbations (top, each in its own range) and one test image with "
    "each added (bottom, clipped to [0, 1])",
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
