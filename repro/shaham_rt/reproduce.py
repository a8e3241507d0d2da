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
# # Understanding adversarial training (Shaham, Yamada & Negahban, Neurocomputing 2018)
#
# Paper: https://arxiv.org/abs/1511.05432; official code runopti/RobustTraining (Torch/Lua).
# Robust training as an alternating min-max,
#
# $$\min_\theta \sum_i \max_{\|r_i\|_p \le \varepsilon} J(\theta, x_i + r_i, y_i),$$
#
# with the inner maximum linearised, $J(x + r) \approx J(x) + \langle g, r\rangle$, whose maximum
# over the ball has a closed form: $\varepsilon\,\mathrm{sign}(g)$ ($\ell_\infty$),
# $\varepsilon g/\|g\|_2$ ($\ell_2$), $\varepsilon$ on the coordinate of largest $|g_j|$
# ($\ell_1$). Each batch is replaced by its perturbed version for the parameter step. The paper
# claims this (i) increases robustness to existing adversarial examples, (ii) makes new ones
# harder to generate and (iii) improves clean accuracy. Its tables were not retrieved: the rows
# of `expected.csv` are the official code's comments (MNIST clean accuracies), tagged unverified.
#
# This notebook, per dataset (Fashion-MNIST; MNIST where `datasets` lists it): the official MNIST
# net trained normally and robustly in the three balls from the same initial weights and batch
# order; clean accuracy; a FIXED set of FGSM images made against the baseline; DeepFool's minimal
# perturbation of each model; the project's robustness battery at $\varepsilon = 0.1$.

# %%
import copy
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
from repro.env import forked_global_rng, pick_device, seed_everything
from repro.expected import read_expected
from repro.fgsm import fgsm
from repro.record import Recorder, read_results
from repro.robust_eval import Protocol
from repro.robust_eval import evaluate as robust_evaluate
from repro.shaham_rt import (
    INTENSITY,
    ShahamNet,
    intensity_to_pixels,
    lr_decay_schedule,
    median_difference_interval,
    minimal_perturbation,
    pad32,
    paper_optimizer,
    robust_adversary,
)
from repro.stats import pack_bits
from repro.train import predict, train_classifier

SLUG = "shaham_rt"
P = scale_params(SLUG, scale)
EXPECTED = read_expected(repro_path(SLUG) / "expected.csv")
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
MODELS = ("baseline", "linf", "l2", "l1")
print(f"scale={scale} device={dev} params={P}")

# %% [markdown]
# ## Data
#
# Images in [0, 1], padded to 32x32 (the official MNIST copy's size). MNIST runs on MNIST when both
# splits are here, else on `mnist-test-split` (first 8,000 test images to train, last 2,000 to
# test: never compared number for number with anything).


# %%
def cut(x, y, n):
    return (x, y) if not n or n >= len(y) else (x[:n], y[:n])


def pick(ds):
    if ds == "fashion_mnist":
        return "fashion_mnist" if available("fashion_mnist", data_dir) else None
    if available("mnist", data_dir):
        return "mnist"
    return "mnist-test-split" if available("mnist-test-split", data_dir) else None


SOURCES, DATA = {}, {}
for ds in P["datasets"]:
    name = pick(ds)
    if name is None:
        print(f"{ds}: not here")
        continue
    SOURCES[ds] = name
    tr, te = (load_dataset(name, s, data_dir=data_dir, device=dev) for s in ("train", "test"))
    x_tr, y_tr = cut(pad32(tr.x), tr.y, P["n_train"])
    x_te, y_te = cut(pad32(te.x), te.y, P["n_test"])
    DATA[ds] = (x_tr, y_tr, x_te, y_te)
    print(f"{ds} ({name}): {len(y_tr)} train / {len(y_te)} test images, 32x32")
if not DATA:
    raise ReproError("neither Fashion-MNIST nor MNIST is here: nothing to run")

for row in EXPECTED:
    if row.not_run_reason:
        continue
    if row.dataset == "mnist" and "mnist" not in DATA:
        why = ("this scale runs Fashion-MNIST only (repro.toml datasets)"
               if "mnist" not in P["datasets"] else "no MNIST files here")  # fmt: skip
        rec.not_run(row.id, why)

# %% [markdown]
# ## Helpers


# %%
def record_accuracy(name, ok, *, row=False, **info):
    """Record a percent accuracy with its per-image vector (a row of expected.csv or a metric)."""
    value = 100.0 * float(ok.float().mean())
    if row:
        return rec.row(name, value, correct=pack_bits(ok), n=len(ok), **info)
    return rec.metric(name, value, correct=pack_bits(ok), n=len(ok), **info)


def record_finite(name, value, **info):
    """Record a free metric when it is finite (a DeepFool median is +inf when half the images
    or more are never fooled: then it is printed, not recorded, and the claims that read it are
    not evaluated)."""
    if math.isfinite(value):
        rec.metric(name, value, **info)
    else:
        print(f"{name} = {value}: not recorded (DeepFool left too many images unfooled)")


CPU_MARK = [time.process_time()]


def section_done(name):
    """Record the CPU seconds since the last mark (`cpu_seconds.<name>`)."""
    now = time.process_time()
    rec.metric(f"cpu_seconds.{name}", now - CPU_MARK[0])
    CPU_MARK[0] = now


# %% [markdown]
# ## (1) Baseline and robust training (l_inf, l_2, l_1)
#
# The official recipe for all four: torch7 SGD (momentum 0.9 with dampening 0.9, L2 coefficient
# 1e-3, lr decay 5e-6 per update), batch 100; the same initial weights and batch order (a paired
# comparison). The radius is the official intensity times the pixel std of the padded training
# set; the training step does not clip to [0, 1] (as the official code).

# %%
NETS, EPS, LOSSES, COST, CLEAN = {}, {}, {}, {}, {}
for ds, (x_tr, y_tr, x_te, y_te) in DATA.items():
    EPS[ds] = {m: intensity_to_pixels(INTENSITY[m], x_tr) for m in MODELS if m != "baseline"}
    for m, eps in EPS[ds].items():
        rec.metric(f"{ds}_{m}_train_radius", eps, intensity=INTENSITY[m],
                   pixel_std=float(x_tr.std()), units="[0, 1] pixels")  # fmt: skip
    print(f"{ds}: training radii in pixels { ({k: round(v, 4) for k, v in EPS[ds].items()}) }")
    with forked_global_rng(gen):
        init = ShahamNet().to(dev)
    order_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    steps = (len(y_tr) + P["batch_size"] - 1) // P["batch_size"]
    for m in MODELS:
        net = copy.deepcopy(init)
        kwargs = {} if m == "baseline" else {"adversary": robust_adversary(m, EPS[ds][m]),
                                              "adv_weight": 1.0}  # fmt: skip
        wall, cpu = time.perf_counter(), time.process_time()
        losses = train_classifier(
            net, x_tr, y_tr, epochs=P["epochs"], batch_size=P["batch_size"], lr=P["lr"],
            optimizer=paper_optimizer(net, lr=P["lr"]), lr_schedule=lr_decay_schedule(steps),
            generator=torch.Generator().manual_seed(order_seed), progress=False, **kwargs,
        )  # fmt: skip
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        NETS[(ds, m)] = net.eval()
        LOSSES[(ds, m)] = losses
        epochs = max(P["epochs"], 1)
        COST[f"{ds}_shaham_{m}"] = wall / epochs
        rec.metric(f"cost.{ds}_shaham_{m}.epoch_seconds", wall / epochs,
                   cpu_seconds=cpu / epochs, n_train=len(y_tr), epochs=P["epochs"])  # fmt: skip
        ok = predict(net, x_te) == y_te
        info = {"dataset": SOURCES[ds], "n_train": len(y_tr), "epochs": P["epochs"]}
        CLEAN[(ds, m)] = record_accuracy(f"{ds}_{m}_clean", ok, **info)
        if ds == "mnist":
            record_accuracy(f"code_mnist_{m}_clean", ok, row=True, **info)
        print(f"{ds} {m}: clean {100 * float(ok.float().mean()):.2f}%, {wall / epochs:.1f} "
              f"s/epoch, losses {[round(v, 4) for v in losses]}")  # fmt: skip
section_done("train")

# %% [markdown]
# ## (2) A fixed set of FGSM images made against the baseline
#
# FGSM (`repro.fgsm.fgsm`, clipped to [0, 1]) against the baseline at eps `fixed_eps` and at the
# l_inf training radius; every model classifies the same images (plain accuracy on the set, as a
# transferred set is scored; the baseline's own number is its white-box FGSM accuracy).

# %%
FIXED = {}
for ds, (_, _, x_te, y_te) in DATA.items():
    x_f, y_f = cut(x_te, y_te, P["n_fixed"])
    base = NETS[(ds, "baseline")]
    for tag, eps in (("fixed_fgsm", P["fixed_eps"]), ("fixed_fgsm_train_radius", EPS[ds]["linf"])):
        x_adv = torch.cat([fgsm(base, x_f[i : i + 500], y_f[i : i + 500], eps=eps)
                           for i in range(0, len(y_f), 500)])  # fmt: skip
        for m in MODELS:
            ok = predict(NETS[(ds, m)], x_adv) == y_f
            FIXED[(ds, m, tag)] = record_accuracy(f"{ds}_{m}_{tag}", ok, eps=eps,
                                                  crafted_against="baseline")  # fmt: skip
    display(pd.DataFrame([{"model": m, **{t: round(FIXED[(ds, m, t)], 2) for t in
                           ("fixed_fgsm", "fixed_fgsm_train_radius")}} for m in MODELS]))  # fmt: skip
section_done("fixed_set")

# %% [markdown]
# ## (3) Minimal perturbations: DeepFool
#
# DeepFool (`repro.deepfool`, l2 and l_inf, overshoot 0.02, iterates in [0, 1]) on the first
# `n_deepfool` test images, each model's own label; an image never flipped counts as +inf. The
# robust models' medians minus the baseline's, with a paired bootstrap interval.

# %%
MINPERT = {}
for ds, (_, _, x_te, _) in DATA.items():
    x_d = x_te[: P["n_deepfool"]]
    for m in MODELS:
        for norm in ("l2", "linf"):
            MINPERT[(ds, m, norm)] = minimal_perturbation(NETS[(ds, m)], x_d, norm=norm,
                                                          max_iter=P["deepfool_iter"])  # fmt: skip
            sizes = MINPERT[(ds, m, norm)]
            record_finite(f"{ds}_{m}_deepfool_{norm}_median", float(sizes.median()),
                          n=len(sizes), never_fooled=int(torch.isinf(sizes).sum()))  # fmt: skip
    for m in MODELS[1:]:
        for norm in ("l2", "linf"):
            ci = median_difference_interval(MINPERT[(ds, m, norm)], MINPERT[(ds, "baseline", norm)])
            name = f"{ds}_{m}_deepfool_{norm}_median_gain"
            for key, value in ((name, ci.estimate), (f"{name}.ci95_low", ci.low),
                               (f"{name}.ci95_high", ci.high)):  # fmt: skip
                record_finite(key, value)
    display(pd.DataFrame([{"model": m, **{f"median {n}": round(float(MINPERT[(ds, m, n)].median()), 4)
                           for n in ("l2", "linf")}} for m in MODELS]))  # fmt: skip
section_done("deepfool")

# %% [markdown]
# ## (4) The shared robustness battery at eps 0.1
#
# `repro.robust_eval` (FGSM, PGD-20, PGD-100 and CW-loss PGD-100 with restarts, AutoAttack) on the
# first `n_robust` test images; the paper's attack is its own one-step l_inf step at eps 0.1
# (which is FGSM). `worst` is per image the worst of the battery.

# %%
REPORTS = {}
for ds in P["battery_datasets"]:
    if ds not in DATA:
        continue
    x_te, y_te = DATA[ds][2], DATA[ds][3]
    x_rb, y_rb = cut(x_te, y_te, P["n_robust"])
    eps = P["battery_eps"]
    protocol = Protocol(eps, restarts=P["robust_restarts"], autoattack=P["robust_autoattack"],
                        attacks=tuple(P["battery_attacks"]), seed=seed)  # fmt: skip
    for m in P["battery_models"]:
        report = robust_evaluate(
            NETS[(ds, m)], x_rb, y_rb, protocol, progress=False, desc=f"{ds} {m}",
            paper_attack=robust_adversary("linf", eps, clip=(0.0, 1.0)),
        )  # fmt: skip
        name = f"{ds}_shaham_{m}"
        report.record(rec, name, dataset=SOURCES[ds], n_train=len(DATA[ds][1]), epochs=P["epochs"])
        REPORTS[name] = report
        print(f"{name}: " + ", ".join(f"{r['attack']} {r['accuracy_pct']:.1f}" for r in report.rows())
              + f"; gap {report.gap():+.1f}")  # fmt: skip
section_done("battery")

# %% [markdown]
# ## Figures

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
ds0 = next(iter(DATA))
labels = {"baseline": "baseline", "linf": "robust l_inf", "l2": "robust l_2", "l1": "robust l_1"}
x_pos = range(len(MODELS))
panels = (
    ("clean", [CLEAN[(ds0, m)] for m in MODELS]),
    (f"fixed FGSM set (eps {P['fixed_eps']:g}, made against the baseline)",
     [FIXED[(ds0, m, "fixed_fgsm")] for m in MODELS]),
)  # fmt: skip
for ax, (title, values) in zip(axes[:2], panels, strict=True):
    ax.bar(x_pos, values, color=["grey", "C0", "C1", "C2"])
    ax.set_xticks(list(x_pos), [labels[m] for m in MODELS], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{SOURCES[ds0]}: {title}", fontsize=9)
ax = axes[2]
for m in MODELS:
    sizes = MINPERT[(ds0, m, "l2")].clamp(max=10.0).sort().values
    ax.plot(sizes.numpy(), torch.linspace(0, 1, len(sizes)).numpy(), label=labels[m])
ax.set_xlabel("DeepFool minimal perturbation ||r||_2")
ax.set_ylabel("fraction of images fooled")
ax.set_title("new adversarial examples: how far they are", fontsize=9)
ax.legend(fontsize=7)
fig.tight_layout()
rec.figure(fig, "clean_fixed_deepfool",
           "clean accuracy; accuracy on the fixed FGSM set made against the baseline; the "
           "cumulative distribution of DeepFool's minimal l2 perturbation (right: further is "
           "more stable)")  # fmt: skip

if REPORTS:
    order = ["clean", "paper", "fgsm", "pgd20", "pgd100", "cw_pgd", "autoattack", "worst"]
    fig, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.8 / len(REPORTS)
    for i, (name, report) in enumerate(REPORTS.items()):
        values = [report.accuracy(a) if a in report.correct else 0.0 for a in order]
        ax.bar([j + i * width for j in range(len(order))], values, width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(order))],
                  [{"autoattack": "AutoAttack /\nAPGD-CE+T", "paper": "paper's\none step"}.get(a, a)
                   for a in order], fontsize=8)  # fmt: skip
    ax.set_ylabel("accuracy (%), clean required")
    ax.legend(fontsize=7)
    fig.tight_layout()
    rec.figure(fig, "battery", f"every model through the shared battery at eps {P['battery_eps']} "
               "(repro.robust_eval); 'paper' is the linearised l_inf step (FGSM)")  # fmt: skip

# %% [markdown]
# ## Cost, the paper vs ours, claims

# %%
display(pd.DataFrame([{"model": k, "s/epoch": round(v, 2)} for k, v in COST.items()]))
if REPORTS:
    display(pd.DataFrame([{"model": n, **{r["attack"]: round(r["accuracy_pct"], 1)
                                          for r in rep.rows()}, "gap": round(rep.gap(), 1)}
                          for n, rep in REPORTS.items()]))  # fmt: skip
section_done("figures_tables")
rec.metric("cpu_seconds.total", time.process_time())
display(rec.comparison(SLUG, scale))
claims = evaluate(load_claims(repro_path(SLUG)), Results.from_results(read_results(out_dir)))
display(pd.DataFrame(claims, columns=["id", "holds", "detail"]))
