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
# # Robust Adversarial Learning via Sparsifying Front Ends (Gopalakrishnan et al., 2018)
#
# Paper: https://arxiv.org/abs/1810.10625 (the lecture's "Robustness via sparsification"; the
# workshop paper arXiv 1803.03880 has the front end on MNIST only). Two defenses against
# $\ell_\infty$ attacks:
#
# - the **sparsifying front end** $f(x) = \mathrm{clip}(\Psi^\top H_K(\Psi x))$, which keeps the
#   $K = \lfloor \rho N \rfloor$ largest coefficients of $x$ in a wavelet basis (Fig. 1: for a
#   linear classifier it attenuates the attack by about $K/N$);
# - **network sparsity** (Fig. 2, Theorem 2): with $\|w_{ij}\|_1 \le \gamma_j$ for every row of
#   every layer, the perturbation at layer $j$ obeys $\|e_j\|_\infty \le \epsilon\prod_{l\le j}\gamma_l$.
#
# Fig. 6 plots Fashion-MNIST binary accuracy against $\epsilon$ for no defense, the front end and
# network sparsity ("more gradual decrease in accuracy"). No number of the figure was retrieved,
# and the pair of classes is not in our sources: we use Sandal (5) vs Sneaker (7), two
# similar-shaped classes (the official binary script uses MNIST 3 vs 7) on which the official
# two-layer net is accurate. Attacks: the paper's (FGSM, the locally linear attack,
# semi-white-box and white-box) and ours (PGD with BPDA, PGD with the exact gradient, the shared
# battery).

# %%
import copy
import time

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
from repro.env import fork_generator, pick_device, seed_everything
from repro.expected import read_expected
from repro.fgsm import fgsm
from repro.madry_pgd import pgd_linf
from repro.record import Recorder, read_results
from repro.robust_eval import Protocol
from repro.robust_eval import evaluate as robust_evaluate
from repro.sparsify import (
    BinaryMLP,
    FrontEndClassifier,
    L1ProjectedAdam,
    SparsifyingFrontEnd,
    loclin_attack,
    theorem2_ratios,
)
from repro.stats import mean_interval, means_interval, pack_bits
from repro.train import predict, train_classifier

SLUG = "sparsify"
P = scale_params(SLUG, scale)
EXPECTED = read_expected(repro_path(SLUG) / "expected.csv")
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
EPS_GRID = [float(e) for e in P["eps_grid"]]
PAPER_ATTACKS = ("fgsm", "loclin_semi", "loclin_white")
print(f"scale={scale} device={dev} params={P}")


def tag(eps):
    return f"e{round(eps * 100):02d}"


for row in EXPECTED:
    rec.not_run(row.id, row.not_run_reason or "no paper value")

# %% [markdown]
# ## Data: the Fashion-MNIST pair

# %%
if not available("fashion_mnist", data_dir):
    raise ReproError("Fashion-MNIST is not here (apt-get install dataset-fashion-mnist)")
A, B = P["pair"]


def pair(split, n):
    d = load_dataset("fashion_mnist", split, data_dir=data_dir, device=dev)
    keep = (d.y == A) | (d.y == B)
    x, y = d.x[keep], (d.y[keep] == B).long()
    return (x, y) if not n or n >= len(y) else (x[:n], y[:n])


x_tr, y_tr = pair("train", P["n_train"])
x_te, y_te = pair("test", 0)
x_ev, y_ev = pair("test", P["n_eval"])
print(f"classes {A} vs {B}: {len(y_tr)} train, {len(y_te)} test, {len(y_ev)} attacked")

# %% [markdown]
# ## Training: no defense, front end (each rho), network sparsity
#
# Every net starts from the same initial weights and sees the same batches. The front-end nets
# are trained on front-end outputs (the official checkpoints `db5-1-30-3-7` are trained with the
# front end in the graph); network sparsity projects each row of both layers onto its l1 ball
# after every Adam step.

# %%
init = BinaryMLP(P["hidden"]).to(dev)
order_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
MODELS, FRONTS, COST = {}, {}, {}


def train(name, x, optimizer_for=None):
    net = copy.deepcopy(init)
    kwargs = {} if optimizer_for is None else {"optimizer": optimizer_for(net)}
    start, cpu = time.perf_counter(), time.process_time()
    losses = train_classifier(net, x, y_tr, epochs=P["epochs"], batch_size=P["batch_size"],
                              lr=P["lr"], generator=torch.Generator().manual_seed(order_seed),
                              progress=False, **kwargs)  # fmt: skip
    epochs = max(P["epochs"], 1)
    COST[name] = (time.perf_counter() - start) / epochs
    rec.metric(f"cost.{name}.epoch_seconds", COST[name],
               cpu_seconds=(time.process_time() - cpu) / epochs, n_train=len(y_tr))  # fmt: skip
    print(f"{name}: losses {[round(v, 4) for v in losses]}, {COST[name]:.2f} s/epoch")
    return net.eval()


MODELS["none"] = train("none", x_tr)
for rho in P["rhos"]:
    name = f"frontend{round(rho * 100)}"
    front = SparsifyingFrontEnd(rho).to(dev)
    start = time.perf_counter()
    with torch.no_grad():
        x_sp = torch.cat([front(x_tr[i : i + 2000]) for i in range(0, len(y_tr), 2000)])
    rec.metric(
        f"cost.{name}.frontend_seconds_per_1000", 1000 * (time.perf_counter() - start) / len(y_tr)
    )
    FRONTS[name] = front
    MODELS[name] = train(name, x_sp)
G1, G2 = P["gammas"]
MODELS["netsparse"] = train(
    "netsparse", x_tr,
    lambda net: L1ProjectedAdam(net.parameters(), [(net.fc1.weight, G1), (net.fc2.weight, G2)],
                                lr=P["lr"]),
)  # fmt: skip


def deployed(name, backward="bpda"):
    """The model an attacker faces: the front end (BPDA or exact gradient) and the net."""
    if name in FRONTS:
        return FrontEndClassifier(FRONTS[name], MODELS[name], backward=backward).eval()
    return MODELS[name]


for name, net in MODELS.items():
    ok = predict(deployed(name), x_te) == y_te
    rec.metric(f"clean.{name}", 100 * float(ok.float().mean()), correct=pack_bits(ok), n=len(ok))
    w1 = net.fc1.weight.detach()
    rec.metric(f"weights.{name}.gamma1", net.gammas()[0])
    rec.metric(f"weights.{name}.gamma2", net.gammas()[1])
    rec.metric(f"weights.{name}.fc1_nonzero_fraction", float((w1.abs() > 1e-6).float().mean()))
    print(f"{name}: clean {100 * float(ok.float().mean()):.2f}%, gammas "
          f"{[round(g, 2) for g in net.gammas()]}")  # fmt: skip

# %% [markdown]
# ## Accuracy against eps (Fig. 6), and Theorem 2 on every attacked example
#
# The paper's attacks: FGSM and the locally linear attack, whose gradient passes through the
# front end as the identity (the official `tf_sp_frontend`'s "BPDA of 1"); the white-box variant
# projects the direction onto the adversarial image's top-rho support `proj_iters` times. For the
# two-logit nets FGSM's sign and the semi-white-box direction coincide (both are
# sign(grad z) times the label's sign). Ours: PGD (`pgd_steps` steps of 2.5 eps / steps, random
# start) with BPDA and with the exact gradient (for nets without a front end the two are one).

# %%
CURVES, T2 = {}, {}


def attacks_for(name, eps, g):
    front = FRONTS.get(name)
    bp, ex = deployed(name, "bpda"), deployed(name, "exact")
    step = 2.5 * eps / P["pgd_steps"]
    out = {
        "fgsm": lambda x, y: fgsm(bp, x, y, eps=eps),
        "loclin_semi": lambda x, y: loclin_attack(bp, x, y, eps=eps),
        "loclin_white": lambda x, y: loclin_attack(bp, x, y, eps=eps, front=front,
                                                   proj_iters=P["proj_iters"] if front else 0),
        "pgd_bpda": lambda x, y: pgd_linf(bp, x, y, eps=eps, step_size=step,
                                          steps=P["pgd_steps"], generator=g),
    }  # fmt: skip
    if front is not None:
        out["pgd_exact"] = lambda x, y: pgd_linf(ex, x, y, eps=eps, step_size=step,
                                                 steps=P["pgd_steps"], generator=g)  # fmt: skip
    return out


start = time.perf_counter()
for name in MODELS:
    model = deployed(name)
    for eps in EPS_GRID:
        g = fork_generator(seed, device=dev)
        for attack, fn in attacks_for(name, eps, g).items():
            if eps == 0:
                x_adv = x_ev
            else:
                x_adv = torch.cat([fn(x_ev[i : i + 500], y_ev[i : i + 500])
                                   for i in range(0, len(y_ev), 500)])  # fmt: skip
            ok = predict(model, x_adv) == y_ev
            CURVES[(name, attack, eps)] = ok
            rec.metric(f"curve.{name}.{attack}.{tag(eps)}", 100 * float(ok.float().mean()),
                       correct=pack_bits(ok), n=len(ok), eps=eps)  # fmt: skip
            if name in ("none", "netsparse") and eps > 0:
                T2.setdefault(name, []).append(theorem2_ratios(MODELS[name], x_ev, x_adv))
    print(f"{name}: " + "; ".join(
        f"{a} " + " ".join(f"{100 * float(CURVES[(name, a, e)].float().mean()):.0f}" for e in EPS_GRID)
        for a in attacks_for(name, 0.1, None)))  # fmt: skip
rec.metric("cpu_free.curves_wall_seconds", time.perf_counter() - start)

# Areas under the curves (trapezoid over the eps grid / its width), per image, and the paired
# bootstrap of each model's area minus no defense's.
width = EPS_GRID[-1] - EPS_GRID[0]
AUC = {}
for (name, attack, _), _ok in CURVES.items():
    if (name, attack) in AUC:
        continue
    stack = torch.stack([CURVES[(name, attack, e)].double() for e in EPS_GRID], dim=1)
    per_image = torch.trapezoid(stack, torch.tensor(EPS_GRID, dtype=torch.float64), dim=1) / width
    AUC[(name, attack)] = per_image.cpu().numpy()
    rec.metric(f"auc.{name}.{attack}", 100 * float(per_image.mean()), eps_grid=EPS_GRID)
for (name, attack), values in AUC.items():
    if name == "none" or ("none", attack) not in AUC:
        continue
    ci = means_interval([values, AUC[("none", attack)]], lambda m: m[:, 0] - m[:, 1])
    base = f"auc.{name}.{attack}.minus_none"
    rec.metric(base, 100 * ci.estimate)
    rec.metric(f"{base}.ci95_low", 100 * ci.low)
    rec.metric(f"{base}.ci95_high", 100 * ci.high)

for name, ratios in T2.items():
    r = torch.cat(ratios)  # (examples x attacks x eps, layers)
    net = MODELS[name]
    rec.metric(f"theorem2.{name}.max_ratio", float(r.max()), n_checked=int(r.shape[0]))
    rec.metric(f"theorem2.{name}.n_checked", r.shape[0])
    rec.metric(f"theorem2.{name}.gamma_product", float(np.prod(net.gammas())))
    for j in range(r.shape[1]):
        rec.metric(f"theorem2.{name}.max_ratio.layer{j + 1}", float(r[:, j].max()))
        rec.metric(f"theorem2.{name}.mean_ratio.layer{j + 1}", float(r[:, j].mean()))
    print(f"Theorem 2, {name}: max ratio per layer {r.max(dim=0).values.tolist()}, mean "
          f"{r.mean(dim=0).tolist()}, gammas {net.gammas()}")  # fmt: skip
display(pd.DataFrame([{"model": n, "attack": a, "AUC %": round(100 * float(v.mean()), 1)}
                      for (n, a), v in AUC.items()]).pivot(index="model", columns="attack"))  # fmt: skip

# %% [markdown]
# ## The shared battery at eps 0.1, and the adaptive worst case
#
# `repro.robust_eval` on the deployed models (front end with BPDA gradients), their two logits
# padded to ten for AutoAttack's targeted parts; `paper` is the white-box locally linear attack.
# For the front end, `adaptive.<model>.worst_all` adds the paper's attack and PGD (`adaptive_steps`,
# `robust_restarts` restarts) with the
# exact (fixed-support) gradient to the battery's worst case.

# %%
EPS = P["headline_eps"]
x_rb, y_rb = x_te[: P["n_robust"]], y_te[: P["n_robust"]]
protocol = Protocol(EPS, restarts=P["robust_restarts"], autoattack=P["robust_autoattack"],
                    attacks=tuple(P["robust_attacks"]), seed=seed)  # fmt: skip
REPORTS = {}
for name in [m for m in MODELS if m in P["battery_models"]]:
    start = time.perf_counter()
    front = FRONTS.get(name)
    bp = deployed(name)
    paper = lambda m, x, y, bp=bp, front=front: loclin_attack(  # noqa: E731
        bp, x, y, eps=EPS, front=front, proj_iters=P["proj_iters"] if front else 0
    )
    report = robust_evaluate(bp, x_rb, y_rb, protocol, paper_attack=paper,
                             progress=False, desc=name)  # fmt: skip
    report.record(rec, name, dataset="fashion_mnist", pair=[A, B], n_train=len(y_tr))
    REPORTS[name] = report
    worst_all = report.correct["worst"] & report.correct["paper"]
    if front is not None:
        ex = deployed(name, "exact")
        steps = P["adaptive_steps"]
        x_adv = pgd_linf(ex, x_rb, y_rb, eps=EPS, step_size=2.5 * EPS / steps, steps=steps,
                         restarts=P["robust_restarts"], generator=fork_generator(seed, device=dev))  # fmt: skip
        ok = (predict(bp, x_adv) == y_rb) & report.correct["clean"]
        rec.metric(f"adaptive.{name}.pgd_exact", 100 * float(ok.float().mean()),
                   correct=pack_bits(ok), n=len(ok))  # fmt: skip
        worst_all &= ok
    rec.metric(f"adaptive.{name}.worst_all", 100 * float(worst_all.float().mean()),
               correct=pack_bits(worst_all), n=len(worst_all))  # fmt: skip
    rec.metric(f"cpu_free.battery_wall_seconds.{name}", time.perf_counter() - start)
    print(f"{name}: " + ", ".join(f"{r['attack']} {r['accuracy_pct']:.1f}" for r in report.rows())
          + f"; adaptive worst {100 * float(worst_all.float().mean()):.1f}; gap {report.gap():+.1f}"
          f" ({time.perf_counter() - start:.0f} s)")  # fmt: skip

# %% [markdown]
# ## Figures

# %%
# Figure 1 (Fig. 6's analogue): accuracy against eps, one panel per model, one line per attack
names = list(MODELS)
fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.2), sharey=True)
styles = {"fgsm": "o-", "loclin_semi": "s--", "loclin_white": "^-", "pgd_bpda": "x:",
          "pgd_exact": "d:"}  # fmt: skip
for ax, name in zip(np.atleast_1d(axes), names, strict=True):
    for attack in styles:
        if (name, attack, EPS_GRID[0]) not in CURVES:
            continue
        ys = [100 * float(CURVES[(name, attack, e)].float().mean()) for e in EPS_GRID]
        ax.plot(EPS_GRID, ys, styles[attack], label=attack, ms=4)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("eps")
    ax.set_ylim(0, 101)
np.atleast_1d(axes)[0].set_ylabel("accuracy (%)")
np.atleast_1d(axes)[-1].legend(fontsize=7)
fig.tight_layout()
rec.figure(fig, "fig6_accuracy_vs_eps",
           f"Fashion-MNIST {A} vs {B}: accuracy against eps (first {len(y_ev)} test images) for no "
           "defense, the front end (rho in %) and network sparsity; the paper's attacks (FGSM, "
           "locally linear semi-white-box and white-box) and ours (PGD with BPDA / exact gradient)")  # fmt: skip

# Figure 2: every model through the battery
order = ["clean", "paper", "fgsm", "pgd20", "pgd100", "cw_pgd", "autoattack", "worst"]
order = [a for a in order if any(a in r.correct for r in REPORTS.values())]
fig, ax = plt.subplots(figsize=(10, 3.6))
bw = 0.8 / len(REPORTS)
for i, (name, report) in enumerate(REPORTS.items()):
    vals = [report.accuracy(a) if a in report.correct else 0.0 for a in order]
    ax.bar([j + i * bw for j in range(len(order))], vals, bw, label=name)
ax.set_xticks([j + 0.4 - bw / 2 for j in range(len(order))], order, fontsize=8)
ax.set_ylabel("accuracy (%), clean required")
ax.legend(fontsize=7)
fig.tight_layout()
rec.figure(fig, "battery", f"the shared battery at eps {EPS} (front end with BPDA gradients; "
           "'paper' = white-box locally linear attack)")  # fmt: skip

# Figure 3: Theorem 2, measured distortion against the bound
fig, axes = plt.subplots(1, max(len(T2), 1), figsize=(4.5 * max(len(T2), 1), 3.0), squeeze=False)
for ax, (name, ratios) in zip(axes[0], T2.items(), strict=False):
    r = torch.cat(ratios).cpu().numpy()
    for j in range(r.shape[1]):
        ax.hist(r[:, j], bins=40, range=(0, 1.05), alpha=0.6, label=f"layer {j + 1}")
    ax.axvline(1.0, color="k", lw=1)
    ax.set_title(f"{name}: prod gamma = {np.prod(MODELS[name].gammas()):.3g}", fontsize=9)
    ax.set_xlabel("||e_j||_inf / (eps prod gamma_l)")
    ax.legend(fontsize=7)
fig.tight_layout()
rec.figure(fig, "theorem2_ratios", "Theorem 2: per attacked example, the layer's output "
           "distortion over its bound (never above 1 if the theorem holds)")  # fmt: skip

# %% [markdown]
# ## Cost, summary, claims

# %%
display(pd.DataFrame([{"model": k, "s/epoch": round(v, 3)} for k, v in COST.items()]))
summary = []
for name, report in REPORTS.items():
    row = {"model": name, "eps": report.eps}
    row.update({report.name(r["attack"]): f"{r['accuracy_pct']:.1f} [{r['ci95_low']:.1f}, {r['ci95_high']:.1f}]"
                for r in report.rows()})  # fmt: skip
    row["gap"] = round(report.gap(), 1)
    summary.append(row)
display(pd.DataFrame(summary))
for name in REPORTS:
    ci = mean_interval(REPORTS[name].correct["worst"])
    print(f"{name}: worst case {ci.format(100, 1)}")
rec.metric("cpu_seconds.total", time.process_time())
display(rec.comparison(SLUG, scale))
claims = evaluate(load_claims(repro_path(SLUG)), Results.from_results(read_results(out_dir)))
display(pd.DataFrame(claims, columns=["id", "holds", "detail"]))
