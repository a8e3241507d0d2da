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
# # Stochastic Activation Pruning (Dhillon et al., ICLR 2018)
#
# [arXiv:1803.01442](https://arxiv.org/abs/1803.01442). After every ReLU of a pretrained network,
# SAP-$k$ draws $r$ units ($k$ % of the layer's count) with replacement from
# $p_j = |h_j| / \sum_k |h_k|$, zeroes the units never drawn and rescales the others by
# $1 / (1 - (1 - p_j)^r)$, a fresh draw at every forward pass, without fine-tuning.
#
# On each dataset of the scale (CIFAR-10 with the official notebook's ResNet-20 at `full`;
# Fashion-MNIST, the stated analogue, with a small pre-activation ResNet):
#
# 1. the dense network, trained with the paper's SGD recipe (shortened below `full`);
# 2. **Section 4.1**: DENSE against SAP-100, SAP-50 and SAP-30 under FGSM over
#    $\lambda \in \{0, 1, 2, 4, 8, 16, 32, 64\}/255$, the attack gradient the mean over
#    `mc_gradient` draws and the prediction the mean softmax over `mc_output` passes, as in the
#    official notebook;
# 3. **Section 4.5**: the iterative attack ($\lceil\lambda/k\rceil$ steps of $k$ = 1/255) on
#    DENSE, through SAP-100 itself (10 draws per step), and DENSE's perturbations on SAP-100;
# 4. **ours**: EOT-PGD (random start, every step's gradient averaged over the draws;
#    Athalye et al.'s attack on SAP) against PGD on DENSE.
#
# Every accuracy is in percent, plain accuracy on the (adversarial) images as the paper plots it,
# recorded with its per-image vector and a 95 % bootstrap interval over the evaluation images
# (`<name>.ci95_low/_high`); a gain (SAP minus DENSE) has the paired interval. The SAP draws come
# from one generator seeded from `seed`: the same seed gives the same numbers.

# %%
import math
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
from repro.env import device_name, fork_generator, forked_global_rng, pick_device, seed_everything
from repro.expected import read_expected
from repro.obfuscated_gradients import eot_pgd_linf
from repro.record import Recorder, read_results
from repro.robust_eval import Protocol
from repro.robust_eval import evaluate as evaluate_robustness
from repro.sap import (
    center_crop,
    fgsm_mc_grid,
    iterative_attack,
    mc_correct,
    preact_resnet,
    random_crop_mirror,
    train_piecewise,
    with_sap,
)
from repro.stats import difference_interval, interval_metrics, mean_interval, pack_bits

SLUG = "sap"
P = scale_params(SLUG, scale)
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
EXPECTED = {row.id: row for row in read_expected(repro_path(SLUG) / "expected.csv")}
PREFIX = {"cifar10": "cifar10", "fashion_mnist": "fmnist"}
LAMBDAS = [int(lam) for lam in P["lambdas"]]
RUN_START = time.perf_counter()
print(f"scale={scale} device={device_name(dev)} threads={torch.get_num_threads()}")
print({k: v for k, v in P.items()})


def record_accuracy(name, correct, data, **info):
    """An accuracy in percent from its per-image vector: the expected.csv row `name` when there is
    one (with the dataset it was measured on), else a free metric; with its 95 % interval."""
    for key, value in interval_metrics(name, mean_interval(correct.cpu())).items():
        rec.metric(key, 100.0 * value)
    value = 100.0 * float(correct.float().mean())
    vector = pack_bits(correct)
    if name in EXPECTED:
        return rec.row(name, value, dataset=data, correct=vector, n=len(correct), **info)
    return rec.metric(name, value, correct=vector)


def record_gain(name, better, worse, data, **info):
    """A gain in points (mean(better) - mean(worse) over the same images), with the paired
    interval; an expected.csv row when there is one."""
    ci = difference_interval(better.cpu(), worse.cpu())
    for key, value in interval_metrics(name, ci).items():
        rec.metric(key, 100.0 * value)
    if name in EXPECTED:
        return rec.row(name, 100.0 * ci.estimate, dataset=data, n=len(better), **info)
    return rec.metric(name, 100.0 * ci.estimate)


def cut(n, total):
    return total if not n else min(int(n), total)


# %% [markdown]
# ## Rows that do not run here
#
# CIFAR-10 rows run where CIFAR-10 is (at `full`); the adversarially trained model (Section 4.1.3)
# and the Atari agents (Table 1) are not reproduced (`expected.csv` says why).

# %%
DATASETS = []
for name in P["datasets"]:
    try:
        here = available(name, data_dir)
    except ReproError:
        here = False
    if here:
        DATASETS.append(name)
        continue
    for row in EXPECTED.values():  # the rows this notebook measures (not ADV's, not Atari's)
        if row.dataset == name and row.setting.get("model") == "ResNet-20":
            rec.not_run(row.id, f"{name} is not here (the runner could not provide it)")
if "cifar10" not in P["datasets"]:
    for row in EXPECTED.values():
        if row.dataset == "cifar10" and row.setting.get("model") == "ResNet-20":
            rec.not_run(row.id, f"CIFAR-10 is measured at full only ({scale} runs Fashion-MNIST)")
print("measured here:", DATASETS)
if not DATASETS:
    raise ReproError("no dataset of this scale is here: apt-get install dataset-fashion-mnist")


# %% [markdown]
# ## 1. The dense network
#
# CIFAR-10: 28 x 28 crops as in the official notebook (random crops of the 4-padded image and
# mirroring for training, a new augmented copy each epoch; the central crop for testing).
# Fashion-MNIST: the 28 x 28 images as they are. SGD (momentum 0.9, weight decay 1e-4) with the
# scale's piecewise-constant rate, through the toolkit's training loop.


# %%
def load(name):
    train, test = (load_dataset(name, s, data_dir=data_dir, device=dev) for s in ("train", "test"))
    n_train = cut(P["n_train"], len(train))
    x_tr, y_tr, x_te, y_te = train.x[:n_train], train.y[:n_train], test.x, test.y
    if name == "cifar10":
        x_te = center_crop(x_te, 28)
    return x_tr, y_tr, x_te, y_te


def train_dense(name, x_tr, y_tr):
    with forked_global_rng(gen):
        model = preact_resnet(x_tr.shape[1], 10, filters=P["filters"], units=P["units"],
                              stem_stride=P["stem_stride"]).to(dev)  # fmt: skip
    augment = None
    if name == "cifar10":
        crops = fork_generator(gen, device=dev)
        augment = lambda x: random_crop_mirror(x, crops, size=28, pad=4)  # noqa: E731
    start = time.perf_counter()
    losses = train_piecewise(model, x_tr, y_tr, schedule=[tuple(s) for s in P["schedule"]],
                             batch_size=P["batch_size"], augment=augment,
                             generator=fork_generator(gen), desc=f"{name} dense")  # fmt: skip
    seconds = time.perf_counter() - start
    print(f"{name}: dense trained in {seconds:.0f}s, losses {[round(v, 4) for v in losses]}")
    return model.eval(), seconds, losses[-1]


DATA, DENSE = {}, {}
for name in DATASETS:
    d = PREFIX[name]
    DATA[name] = load(name)
    x_tr, y_tr, x_te, y_te = DATA[name]
    print(f"{name}: {len(y_tr)} training images, {len(y_te)} test images")
    DENSE[name], seconds, loss = train_dense(name, x_tr, y_tr)
    rec.metric(f"{d}_train_seconds", seconds)
    # The Robustness page's cost column: the dense network's mean epoch (SAP-100 trains nothing of
    # its own: its cost is this same epoch).
    epochs = sum(int(e) for _, e in P["schedule"])
    for model_name in ("dense", "sap100"):
        rec.metric(f"cost.{d}_{model_name}.epoch_seconds", seconds / epochs, epochs=epochs,
                   n_train=len(y_tr))  # fmt: skip
    rec.metric(f"{d}_train_final_loss", loss)
    rec.metric(
        f"{d}_dense_test_accuracy_all",
        100.0 * float(mc_correct(DENSE[name], x_te, y_te).float().mean()),
    )


# %% [markdown]
# ## 2. Section 4.1: DENSE against SAP-k under FGSM over the lambda grid
#
# SAP-k is the dense network with SAP after every ReLU (`with_sap`); its prediction is the mean
# softmax of `mc_output` passes and FGSM's gradient the mean over `mc_gradient` draws, one
# gradient for every lambda. DENSE and SAP-100 run on the first `n_eval` test images, the other
# SAP-k on the first `n_eval_k` of them.


# %%
def fgsm_accuracy(model, x, y, *, stochastic):
    """Per lambda, the per-image correctness under FGSM from one (Monte-Carlo) gradient."""
    draws = P["mc_gradient"] if stochastic else 1
    passes = P["mc_output"] if stochastic else 1
    chunk = max(1, P["grad_rows"] // draws)
    out = {lam: [] for lam in LAMBDAS}
    for i in range(0, x.shape[0], chunk):
        xb, yb = x[i : i + chunk], y[i : i + chunk]
        advs = fgsm_mc_grid(model, xb, yb, eps=[lam / 255 for lam in LAMBDAS], samples=draws)
        for lam, xa in zip(LAMBDAS, advs, strict=True):
            out[lam].append(mc_correct(model, xa, yb, samples=passes))
    return {lam: torch.cat(v) for lam, v in out.items()}


SAP, FGSM = {}, {}
for name in DATASETS:
    d = PREFIX[name]
    x_tr, y_tr, x_te, y_te = DATA[name]
    n_eval = cut(P["n_eval"], len(y_te))
    n_k = min(cut(P["n_eval_k"], len(y_te)), n_eval)
    x, y = x_te[:n_eval], y_te[:n_eval]
    sap_gen = fork_generator(gen, device=dev)
    SAP[name] = {k: with_sap(DENSE[name], k / 100, sampler=P["sampler"], generator=sap_gen).eval()
                 for k in P["sap_percents"]}  # fmt: skip
    start = time.perf_counter()
    clean = {"dense": mc_correct(DENSE[name], x, y)}
    record_accuracy(f"{d}_dense_clean", clean["dense"], name, defense="dense")
    for k, model in SAP[name].items():
        clean[k] = mc_correct(model, x, y, samples=P["mc_output"])
        record_accuracy(f"{d}_sap{k}_clean", clean[k], name, defense=f"SAP-{k}",
                        mc_output=P["mc_output"])  # fmt: skip
        record_gain(f"{d}_sap{k}_fgsm_gain_lam0", clean[k], clean["dense"], name,
                    mc_output=P["mc_output"])  # fmt: skip
    rec.metric(f"{d}_clean_seconds", time.perf_counter() - start)

    start = time.perf_counter()
    grid = {"dense": fgsm_accuracy(DENSE[name], x, y, stochastic=False)}
    for k, model in SAP[name].items():
        n = n_eval if k == 100 else n_k
        grid[k] = fgsm_accuracy(model, x[:n], y[:n], stochastic=True)
        rec.metric(f"{d}_sap{k}_fgsm_seconds", time.perf_counter() - start)
    FGSM[name] = grid
    for lam in LAMBDAS[1:]:
        dense = grid["dense"][lam]
        record_accuracy(f"{d}_dense_fgsm_lam{lam}", dense, name, attack="FGSM", lam=lam)
        for k in P["sap_percents"]:
            sap = grid[k][lam]
            record_accuracy(f"{d}_sap{k}_fgsm_lam{lam}", sap, name, attack="FGSM", lam=lam,
                            mc_gradient=P["mc_gradient"], mc_output=P["mc_output"])  # fmt: skip
            record_gain(f"{d}_sap{k}_fgsm_gain_lam{lam}", sap, dense[: len(sap)], name,
                        attack="FGSM", lam=lam, mc_gradient=P["mc_gradient"],
                        mc_output=P["mc_output"])  # fmt: skip

# %%
rows = []
for name, grid in FGSM.items():
    for model, per_lam in grid.items():
        label = "DENSE" if model == "dense" else f"SAP-{model}"
        rows.append({"dataset": name, "model": label, "images": len(per_lam[0]),
                     **{f"lam {lam}": round(100.0 * float(v.float().mean()), 1)
                        for lam, v in per_lam.items()}})  # fmt: skip
display(pd.DataFrame(rows))

# %%
fig, axes = plt.subplots(1, len(FGSM), figsize=(6 * len(FGSM), 3.8), squeeze=False)
for ax, (name, grid) in zip(axes[0], FGSM.items(), strict=True):
    positions = range(len(LAMBDAS))
    for model, per_lam in grid.items():
        label = "DENSE" if model == "dense" else f"SAP-{model}"
        means, lows, highs = [], [], []
        for lam in LAMBDAS:
            ci = mean_interval(per_lam[lam].cpu())
            means.append(100 * ci.estimate)
            lows.append(100 * (ci.estimate - ci.low))
            highs.append(100 * (ci.high - ci.estimate))
        style = {"color": "k"} if model == "dense" else {}
        ax.errorbar(positions, means, yerr=[lows, highs], marker="o", capsize=2, label=label,
                    **style)  # fmt: skip
    ax.set_xticks(list(positions), [str(lam) for lam in LAMBDAS])
    ax.set_xlabel("lambda (1/255)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{name}: FGSM with the Monte-Carlo gradient (Section 4.1's protocol)", fontsize=9)
    ax.legend(fontsize=8)
fig.tight_layout()
rec.figure(
    fig,
    "fgsm_accuracy_vs_lambda",
    "Accuracy under FGSM against lambda (1/255 units) for the dense network and SAP-k "
    f"(gradient: mean of {P['mc_gradient']} draws; prediction: mean softmax of {P['mc_output']} "
    "passes), with 95 % bootstrap intervals over the test images",
)


# %% [markdown]
# ## 3. Section 4.5: the iterative attack, through SAP-100 and transferred from DENSE
#
# $\lceil\lambda/k\rceil$ sign steps of $k$ = `iter_step`/255 from the image, projected on the
# $\lambda$-ball: on DENSE; through SAP-100 itself, each step's gradient the mean of `iter_mc`
# draws; and DENSE's adversarial images given to SAP-100. On the first `n_iter` test images.

# %%
for name in DATASETS:
    d = PREFIX[name]
    x_tr, y_tr, x_te, y_te = DATA[name]
    n_iter = cut(P["n_iter"], len(y_te))
    x, y = x_te[:n_iter], y_te[:n_iter]
    dense, sap = DENSE[name], SAP[name][100]
    step = P["iter_step"] / 255
    start = time.perf_counter()
    clean_dense = mc_correct(dense, x, y)
    clean_sap = mc_correct(sap, x, y, samples=P["mc_output"])
    record_accuracy(f"{d}_dense_iter_lam0", clean_dense, name, attack="none")
    record_accuracy(f"{d}_sap100_iter_self_lam0", clean_sap, name, attack="none")
    record_accuracy(f"{d}_sap100_iter_from_dense_lam0", clean_sap, name, attack="none")
    for lam in P["iter_lambdas"][name]:
        x_dense = iterative_attack(dense, x, y, eps=lam / 255, step=step)
        x_self = iterative_attack(sap, x, y, eps=lam / 255, step=step, samples=P["iter_mc"])
        info = {"lam": lam, "step": P["iter_step"], "steps": math.ceil(lam / P["iter_step"])}
        record_accuracy(f"{d}_dense_iter_lam{lam}", mc_correct(dense, x_dense, y), name,
                        attack="iterative", **info)  # fmt: skip
        record_accuracy(f"{d}_sap100_iter_self_lam{lam}",
                        mc_correct(sap, x_self, y, samples=P["mc_output"]), name,
                        attack="iterative through SAP-100", iter_mc=P["iter_mc"], **info)  # fmt: skip
        record_accuracy(f"{d}_sap100_iter_from_dense_lam{lam}",
                        mc_correct(sap, x_dense, y, samples=P["mc_output"]), name,
                        attack="iterative on the dense model", **info)  # fmt: skip
    rec.metric(f"{d}_iter_seconds", time.perf_counter() - start)


# %% [markdown]
# ## 4. Ours: EOT-PGD against SAP-100
#
# Not in the paper. `repro.obfuscated_gradients.eot_pgd_linf`: a uniform random start in the
# $\lambda$-ball, `eot_steps` sign steps of 2.5 $\lambda$ / `eot_steps`, each step's gradient the
# mean over `eot_samples` SAP draws (the gradient of the expected loss), the best iterate kept.
# DENSE is attacked by the same PGD (one draw: it is deterministic; its own prediction judges the
# iterates). Beside it, SAP-100 under the same PGD with a single draw per step (no EOT), to show
# what averaging the randomness does. On the first `n_eot` test images.

# %%
for name in DATASETS:
    d = PREFIX[name]
    x_tr, y_tr, x_te, y_te = DATA[name]
    n_eot = cut(P["n_eot"], len(y_te))
    x, y = x_te[:n_eot], y_te[:n_eot]
    dense, sap = DENSE[name], SAP[name][100]
    start = time.perf_counter()
    for lam in P["eot_lambdas"][name]:
        eps = lam / 255
        settings = {"eps": eps, "step_size": 2.5 * eps / P["eot_steps"], "steps": P["eot_steps"]}
        info = {"lam": lam, "steps": P["eot_steps"]}
        x_dense = eot_pgd_linf(dense, x, y, **settings, judge=dense, generator=fork_generator(gen))
        x_one = eot_pgd_linf(sap, x, y, **settings, samples=1, generator=fork_generator(gen))
        x_eot = eot_pgd_linf(sap, x, y, **settings, samples=P["eot_samples"],
                             generator=fork_generator(gen))  # fmt: skip
        dense_ok = mc_correct(dense, x_dense, y)
        eot_ok = mc_correct(sap, x_eot, y, samples=P["mc_output"])
        record_accuracy(f"{d}_dense_pgd_lam{lam}", dense_ok, name, attack="PGD", **info)
        record_accuracy(f"{d}_sap100_pgd_lam{lam}", mc_correct(sap, x_one, y, samples=P["mc_output"]),
                        name, attack="PGD, one draw per step", **info)  # fmt: skip
        record_accuracy(f"{d}_sap100_eot_pgd_lam{lam}", eot_ok, name, attack="EOT-PGD",
                        eot_samples=P["eot_samples"], **info)  # fmt: skip
        record_gain(f"{d}_sap100_eot_pgd_gain_lam{lam}", eot_ok, dense_ok, name, **info)
    rec.metric(f"{d}_eot_seconds", time.perf_counter() - start)


# %% [markdown]
# ## 5. The project's robustness battery on SAP-100 and DENSE
#
# `repro.robust_eval` (the same attacks for every robust model of the project; the site's
# Robustness page reads them) on the first `robust_n` test images at the EOT-PGD grid's largest
# $\lambda$ (8/255 on both datasets, Athalye et al.'s radius): the attacks `robust_attacks`
# (`smoke`: clean, FGSM, PGD-20 only), AutoAttack as `robust_autoattack`. "The paper's attack"
# is Section 4.5's iterative attack at that $\lambda$: through SAP-100 itself (`iter_mc` draws
# per step) for SAP-100, on DENSE for DENSE.
#
# SAP-100 is stochastic and the battery is not adaptive to it: its attacks take one draw of the
# pruning per gradient (no EOT), so on SAP-100 it is a lower-effort check; Section 4's EOT-PGD is
# the adaptive evaluation. The battery judges every image by one forward pass of SAP-100, i.e. one
# fresh draw of the pruning (not the mean softmax of `mc_output` passes of Sections 2-4, so its
# `clean` is a single-draw accuracy), and every draw, in the attacks and in the judging, comes
# from the battery's own SAP-100 copy, whose generator is forked from the notebook's seeded `gen`:
# never from torch's global stream (which torchattacks reseeds), and the same seed gives the same
# numbers.


# %%
def section_4_5_attack(eps, step, draws):
    """The paper's iterative attack as the battery calls it: (model, x, y) -> adversarial x."""
    return lambda m, xb, yb: iterative_attack(m, xb, yb, eps=eps, step=step, samples=draws)


for name in DATASETS:
    d = PREFIX[name]
    x_tr, y_tr, x_te, y_te = DATA[name]
    n_r = cut(P["robust_n"], len(y_te))
    lam = max(P["eot_lambdas"][name])
    eps, step = lam / 255, P["iter_step"] / 255
    protocol = Protocol(eps, restarts=P["robust_restarts"], autoattack=P["robust_autoattack"],
                        seed=seed, attacks=tuple(P["robust_attacks"]))  # fmt: skip
    sap_battery = with_sap(DENSE[name], 1.0, sampler=P["sampler"],
                           generator=fork_generator(gen, device=dev)).eval()  # fmt: skip
    info = {"dataset": name, "lam": lam, "n_train": len(y_tr)}
    start = time.perf_counter()
    for model_name, model, draws in (("dense", DENSE[name], 1),
                                     ("sap100", sap_battery, P["iter_mc"])):  # fmt: skip
        report = evaluate_robustness(model, x_te[:n_r], y_te[:n_r], protocol,
                                     paper_attack=section_4_5_attack(eps, step, draws),
                                     desc=f"{name} {model_name} battery")  # fmt: skip
        report.record(rec, f"{d}_{model_name}", paper_attack="Section 4.5 iterative",
                      iter_mc=draws, **info)  # fmt: skip
        display(pd.DataFrame(report.rows()).assign(model=model_name).round(2))
    rec.metric(f"{d}_battery_seconds", time.perf_counter() - start)

# %%
res = read_results(out_dir)
values = {r["id"]: r["value"] for r in res["rows"]} | {
    m["name"]: m["value"] for m in res["metrics"]
}
table = []
for name in DATASETS:
    d = PREFIX[name]
    for lam in sorted({*P["iter_lambdas"][name], *P["eot_lambdas"][name]}):
        table.append({
            "dataset": name, "lambda": lam,
            "FGSM: dense": values.get(f"{d}_dense_fgsm_lam{lam}"),
            "FGSM: SAP-100": values.get(f"{d}_sap100_fgsm_lam{lam}"),
            "iter: dense": values.get(f"{d}_dense_iter_lam{lam}"),
            "iter: SAP-100 (itself)": values.get(f"{d}_sap100_iter_self_lam{lam}"),
            "iter: SAP-100 (from dense)": values.get(f"{d}_sap100_iter_from_dense_lam{lam}"),
            "PGD: dense": values.get(f"{d}_dense_pgd_lam{lam}"),
            "PGD: SAP-100 (1 draw)": values.get(f"{d}_sap100_pgd_lam{lam}"),
            "EOT-PGD: SAP-100": values.get(f"{d}_sap100_eot_pgd_lam{lam}"),
        })  # fmt: skip
display(pd.DataFrame(table).round(1))
rec.metric("wall_seconds", time.perf_counter() - RUN_START)

# %% [markdown]
# ## Paper vs ours
#
# The paper's rows are CIFAR-10 (compared at `full` only, where CIFAR-10 is here); the claims are
# checked on every dataset that ran.

# %%
display(rec.comparison(SLUG, scale))
claims = evaluate(load_claims(repro_path(SLUG)), Results.from_results(read_results(out_dir)))
display(pd.DataFrame(claims, columns=["id", "holds", "detail"]))
