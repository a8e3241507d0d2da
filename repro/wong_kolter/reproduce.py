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
# # Provable defenses via the convex outer adversarial polytope (Wong & Kolter, ICML 2018)
#
# Paper: https://arxiv.org/abs/1711.00851. The LP relaxation of a ReLU network over the
# $\ell_\infty$ ball $\|x' - x\|_\infty \le \epsilon$ has a dual that is itself a network run
# backwards (Theorem 1): any dual-feasible $\nu$ gives a lower bound $J_\epsilon(x, \nu(c))$ on
# $c^\top \hat z_k$ over the ball. With $c = e_y - e_j$ for every class $j$, $J > 0$ for all
# $j \ne y$ certifies that no attack within $\epsilon$ changes the label; $-J$ used as logits in
# the cross-entropy is an upper bound on the worst-case loss (Theorem 2), which robust training
# minimises. The layer-wise bounds $l_i, u_i$ the dual needs come from Algorithm 1.
#
# **Table 1** (error rates at $\epsilon = 0.1$; "robust" = trained with the robust loss): test
# error, FGSM error, PGD error and the certified robust-error bound, for MNIST and Fashion-MNIST
# (and HAR, SVHN: not here). The protocol is the v0.2 code's: `mnist_model` (two 4×4 stride-2
# convolutions, FC 100), Adam 1e-3, batch 50, 20 epochs; the attacks of its `attacks.py`: FGSM and
# PGD (100 steps of 0.01, **no random start, no clip to [0, 1]**) counted as plain error rates.
# Beside them, the project's robustness battery (`repro.robust_eval`: our clipped PGD with
# random restarts, CW-PGD and AutoAttack).
#
# **Scales.** `full` is the paper's setting (GPU). On the CPU a robust training step of the conv
# net takes ~47 s per batch of 50, so `smoke` and `small` run the same protocol with a ReLU MLP
# (`mlp_model`) on a subset of Fashion-MNIST for fewer epochs (their rows are never compared with
# the paper's numbers; the claims are checked on them). MNIST's training split is not here: its
# rows run on the `mnist-test-split` analogue where `mnist_analogue` is set (`full`), else are
# not run.

# %%
# The toolkit, the scale's parameters, the device, the seed and the recorder
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from repro import ReproError
from repro.checkpoint import checkpoint_root
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path, scale_params
from repro.data import available, load_dataset
from repro.env import fork_generator, forked_global_rng, pick_device, seed_everything
from repro.expected import read_expected
from repro.record import Recorder, read_results
from repro.robust_eval import Protocol
from repro.robust_eval import evaluate as robustness
from repro.stats import pack_bits
from repro.train import train_classifier
from repro.wong_kolter import (
    certify,
    dual_objective,
    exact_fp32,
    layer_bounds,
    lp_bound,
    margin_matrix,
    mlp_model,
    mnist_model,
    paper_errors,
    pgd_v02,
    train_robust,
)

SLUG = "wong_kolter"
P = scale_params(SLUG, scale)
EXPECTED = read_expected(repro_path(SLUG) / "expected.csv")
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
# Bounds in true fp32: no TF32 anywhere in this run (the paper's GPUs had none either).
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
EPS = P["eps"]
print(f"scale={scale} device={dev} params={P}")
rec.metric("eps", EPS)


def build():
    """The scale's network: the paper's conv net, or the CPU scales' MLP."""
    if P["model"] == "mnist_model":
        return mnist_model().to(dev)
    if P["model"] == "mlp":
        return mlp_model(tuple(P["hidden"])).to(dev)
    raise ReproError(f"unknown model {P['model']!r} in repro.toml")


MODEL_NAME = (
    "mnist_model" if P["model"] == "mnist_model" else "mlp_" + "_".join(map(str, P["hidden"]))
)

# %% [markdown]
# ## Data
#
# Fashion-MNIST always (the paper's own row). MNIST only where `mnist_analogue` is set: its
# training split when it is here, else `mnist-test-split` (train on the first 8,000 test images,
# test on the last 2,000; the rows then say so and are never compared with the paper's).

# %%
DATASETS = {"fmnist": "fashion_mnist"}
if not available("fashion_mnist", data_dir):
    raise ReproError("Fashion-MNIST is not here: apt-get install dataset-fashion-mnist")
mnist_reason = None
if not P["mnist_analogue"]:
    mnist_reason = (
        f"the MNIST training split is not here, and the {scale} scale does not run the "
        "mnist-test-split analogue (mnist_analogue = false)"
    )
elif available("mnist", data_dir):
    DATASETS["mnist"] = "mnist"
elif available("mnist-test-split", data_dir):
    DATASETS["mnist"] = "mnist-test-split"
else:
    mnist_reason = "no MNIST files here (neither the training split nor the test split)"
if mnist_reason:
    for row in EXPECTED:
        if row.dataset == "mnist":
            rec.not_run(row.id, mnist_reason)


def load(name):
    train = load_dataset(name, "train", data_dir=data_dir, device=dev)
    test = load_dataset(name, "test", data_dir=data_dir, device=dev)
    n_train, n_test = P["n_train"] or len(train), P["n_test"] or len(test)
    return train.x[:n_train], train.y[:n_train], test.x[:n_test], test.y[:n_test]


DATA = {key: load(name) for key, name in DATASETS.items()}
for key, data in DATA.items():
    print(f"{DATASETS[key]}: {len(data[1])} train / {len(data[3])} test")

# %% [markdown]
# ## Training: normally, and with the robust loss
#
# Both networks start from the same initial weights (one seed per dataset) and see the batches
# in the same order: Adam at `lr`, batch `batch_size`, `epochs` epochs
# (`repro.train.train_classifier`). The robust one minimises Theorem 2's robust cross-entropy
# $L(-J_\epsilon(x, e_y 1^\top - I), y)$ (`robust_loss`, v0.2's gradients), one call of the loop
# per epoch so that $\epsilon$ can follow the v0.2 warm-up (`epsilon_schedule`): `train_robust`.
# With `REPRO_CHECKPOINT_DIR` set, the robust training is saved after every epoch and a stopped
# run (a device call's time limit: `full` is the longest training of the project) resumes there
# with the same settings, ending exactly where an uninterrupted run ends.

# %%
MODELS, CURVES, EPOCH_SECONDS = {}, {}, {}
CKPT = checkpoint_root()  # $REPRO_CHECKPOINT_DIR, else None: a stopped run resumes from it
for key, (x_tr, y_tr, _, _) in DATA.items():
    with forked_global_rng(gen) as init_seed:
        natural = build()
    robust = build()
    robust.load_state_dict(natural.state_dict())
    order_seed = fork_generator(gen).initial_seed()  # the same batch order for both
    rec.metric(f"{key}_init_seed", init_seed)
    rec.metric(f"{key}_order_seed", order_seed)
    kwargs = dict(batch_size=P["batch_size"], lr=P["lr"], progress=False)
    start = time.perf_counter()
    nat_losses = train_classifier(natural, x_tr, y_tr, epochs=P["epochs"],
                                  generator=fork_generator(order_seed), desc=f"{key} natural",
                                  **kwargs)  # fmt: skip
    EPOCH_SECONDS[(key, "natural")] = (time.perf_counter() - start) / max(1, P["epochs"])
    start_eps = P[f"start_eps_{DATASETS[key].replace('-test-split', '')}"]
    start_eps = None if start_eps == "none" else float(start_eps)
    trained = train_robust(
        robust, x_tr, y_tr, eps=EPS, epochs=P["epochs"], batch_size=P["batch_size"], lr=P["lr"],
        generator=fork_generator(order_seed), start_eps=start_eps,
        checkpoint=CKPT / f"wong_kolter-{key}-{MODEL_NAME}-{scale}-seed{seed}.pt" if CKPT else None,
        config={"slug": SLUG, "dataset": DATASETS[key], "model": MODEL_NAME,
                "init_seed": init_seed, "order_seed": order_seed},
        desc=f"{key} robust",
    )  # fmt: skip
    rob_losses, seconds = trained.losses, trained.seconds
    for epoch in range(trained.epochs):
        print(f"{key} robust epoch {epoch}: eps {trained.eps[epoch]:.4f}, robust loss "
              f"{rob_losses[epoch]:.4f}, {seconds[epoch]:.1f}s on {trained.devices[epoch]}"
              + (" (resumed from the checkpoint)" if epoch < trained.resumed_from else ""))  # fmt: skip
    rec.metric(f"{key}_robust_resumed_from_epoch", trained.resumed_from,
               devices=sorted(set(trained.devices)))  # fmt: skip
    EPOCH_SECONDS[(key, "robust")] = sum(seconds) / len(seconds)
    for name, value in EPOCH_SECONDS.items():
        if name[0] == key:
            rec.metric(f"{key}_{name[1]}_epoch_seconds", value, n_train=len(y_tr),
                       batch_size=P["batch_size"], device=str(dev))  # fmt: skip
    MODELS[key] = {"natural": natural.eval(), "robust": robust.eval()}
    CURVES[key] = {"natural": nat_losses, "robust": rob_losses}

# %% [markdown]
# ## Table 1: test, FGSM and PGD error, and the certified bound
#
# On the first `n_test` test images, as v0.2 counts them: the plain error rate on the clean and
# on the attacked images (the paper's FGSM and PGD, not clipped to [0, 1]), and the certified
# bound (an image counts as an error unless $J_\epsilon(x, e_y - e_j) > 0$ for every $j \ne y$,
# computed in fp32). Each row keeps its per-image vector (1 = right under that column).

# %%
COLUMNS = {"test": "test_err", "fgsm": "fgsm_err", "pgd": "pgd_err", "bound": "bound"}
ERRORS, CERTS = {}, {}
for key, (_, _, x_te, y_te) in DATA.items():
    for training, model in MODELS[key].items():
        start = time.perf_counter()
        cert = certify(model, x_te, y_te, EPS)
        rate = len(y_te) / (time.perf_counter() - start)
        rec.metric(f"{key}_{training}_certified_per_second", rate, device=str(dev))
        start = time.perf_counter()
        errors = paper_errors(model, x_te, y_te, EPS, pgd_steps=P["pgd_steps"],
                              pgd_step_size=P["pgd_step_size"], certificate=cert)  # fmt: skip
        rec.metric(f"{key}_{training}_attacks_seconds", time.perf_counter() - start)
        ERRORS[(key, training)], CERTS[(key, training)] = errors, cert
        for column, suffix in COLUMNS.items():
            wrong = errors[column]
            rec.row(f"t1_{key}_{training}_{suffix}", 100.0 * wrong.float().mean(),
                    dataset=DATASETS[key], model=MODEL_NAME, training=training, eps=EPS,
                    n_test=len(y_te), n_train=len(DATA[key][1]), epochs=P["epochs"],
                    correct=pack_bits((~wrong).cpu().numpy()))  # fmt: skip
        certified_margins = cert.bound[cert.certified]
        if certified_margins.numel():
            rec.metric(f"{key}_{training}_certified_margin_median", certified_margins.median())
table = pd.DataFrame(
    {
        f"{k} {t}": {c: 100.0 * float(e[c].float().mean()) for c in COLUMNS}
        for (k, t), e in ERRORS.items()
    }
).T
print(f"error rates (%) on the first {P['n_test'] or 'all'} test images, eps {EPS}")
display(table.round(2))

# %% [markdown]
# ## The project's robustness battery
#
# The models of `battery_models` (the robust one at every scale) through
# `repro.robust_eval.evaluate` (FGSM, PGD-20, PGD-100 with restarts, CW-PGD and AutoAttack,
# clipped to [0, 1], clean-correct required), with the paper's PGD as "the paper's attack", on
# the first `n_robust` test images. The gap between the paper's attack and the worst case is
# recorded beside it.

# %%
for key, (_, _, x_te, y_te) in DATA.items():
    n_r = P["n_robust"] or len(y_te)
    protocol = Protocol(EPS, restarts=P["restarts"], autoattack=P["autoattack"], seed=seed)

    def paper_attack(model, xb, yb):
        return pgd_v02(model, xb, yb, eps=EPS, step_size=P["pgd_step_size"], steps=P["pgd_steps"])

    for training, model in MODELS[key].items():
        if training not in P["battery_models"]:
            continue
        start = time.perf_counter()
        report = robustness(model, x_te[:n_r], y_te[:n_r], protocol, paper_attack=paper_attack,
                            progress=False)  # fmt: skip
        report.record(rec, f"{key}_{training}", dataset=DATASETS[key], network=MODEL_NAME)
        rec.metric(f"{key}_{training}_battery_seconds", time.perf_counter() - start)
        certified = CERTS[(key, training)].certified[:n_r].cpu()
        broken = certified & ~report.correct["worst"].cpu()
        rec.metric(f"{key}_{training}_certified_but_broken", int(broken.sum()))
        print(f"{key} {training}: " + ", ".join(f"{r['attack']} {r['accuracy_pct']:.1f}%"
                                                for r in report.rows())
              + f"; certified {100 * certified.float().mean():.1f}%, certified but broken "
              f"{int(broken.sum())}")  # fmt: skip

# %% [markdown]
# ## An independent check of the bound: the LP itself, solved by HiGHS
#
# For the robust model's first `lp_n` test images and every wrong class $j$, the certified margin
# $J_\epsilon(x, e_y - e_j)$ against the optimum of the LP whose dual our network computes (the
# ReLU relaxation with the slope $u/(u-l)$ on both faces, with the same $l, u$): they must agree
# to solver precision. On the first `lp_triangle_n` images also against the paper's LP (2) (the
# triangle relaxation): $J$ must never exceed it. scipy's HiGHS sees only the weights, $x$,
# $\epsilon$, $l$ and $u$: no code of ours computes its answer.

# %%
for key, (_, _, x_te, y_te) in DATA.items():
    model = MODELS[key]["robust"]
    n_lp = min(P["lp_n"], len(y_te))
    with torch.no_grad(), exact_fp32():
        bounds = layer_bounds(model, x_te[:n_lp], EPS)
        c = margin_matrix(y_te[:n_lp], 10)
        margins = dual_objective(bounds, c)
    rel, gaps, above, pairs = [], [], 0, 0
    start = time.perf_counter()
    for i in range(n_lp):
        for j in range(10):
            if j == int(y_te[i]):
                continue
            ours = float(margins[i, j])
            lp = lp_bound(bounds, i, c[i, j], relaxation="parallel")
            rel.append(abs(ours - lp) / (1.0 + abs(ours)))
            pairs += 1
            if i < P["lp_triangle_n"]:
                tri = lp_bound(bounds, i, c[i, j], relaxation="triangle")
                gaps.append(tri - ours)
                above += ours > tri + 1e-5 * (1.0 + abs(tri))
    rec.metric(f"{key}_lp_parallel_checked", pairs)
    rec.metric(f"{key}_lp_parallel_max_rel_diff", max(rel))
    rec.metric(f"{key}_lp_triangle_checked", len(gaps))
    rec.metric(f"{key}_lp_triangle_violations", above)
    rec.metric(f"{key}_lp_triangle_mean_gap", sum(gaps) / len(gaps))
    rec.metric(f"{key}_lp_seconds", time.perf_counter() - start)
    print(f"{key}: {pairs} pairs, max |J - LP| / (1 + |J|) = {max(rel):.2e}; triangle LP on "
          f"{len(gaps)} pairs: mean LP - J {sum(gaps) / len(gaps):.4f}, J above it {above} times")  # fmt: skip

# %% [markdown]
# ## Figures: the certified margins, and training

# %%
fig, axes = plt.subplots(1, 1 + len(DATA), figsize=(5 * (1 + len(DATA)), 3.6))
for ax, key in zip(axes[1:], DATA, strict=True):
    for training in ("natural", "robust"):
        m = CERTS[(key, training)].bound.clamp(-5, 5).cpu()
        ax.hist(m, bins=60, alpha=0.6, label=training)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel(f"certified margin min_j J(x, e_y - e_j), clamped to [-5, 5] ({key})")
    ax.set_ylabel("test images (log scale)")
    ax.legend(fontsize=8)
for key in DATA:
    for training, losses in CURVES[key].items():
        axes[0].plot(range(1, len(losses) + 1), losses, marker="o", label=f"{key} {training}")
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("training loss (CE; robust CE for robust)")
axes[0].legend(fontsize=8)
fig.tight_layout()
rec.figure(
    fig,
    "margins_and_training",
    f"left: the mean training loss per epoch (cross-entropy, or the robust cross-entropy at the "
    f"epoch's eps); right: per test image the smallest certified margin at eps {EPS} "
    "(> 0: certified), for the normally and the robustly trained network",
)

fig, ax = plt.subplots(figsize=(9, 3.6))
labels, ours, paper = [], [], []
for row in EXPECTED:
    if row.id in {r["id"] for r in read_results(out_dir)["rows"]}:
        value = next(r["value"] for r in read_results(out_dir)["rows"] if r["id"] == row.id)
        labels.append(row.id.removeprefix("t1_").replace("_", " "))
        ours.append(value)
        paper.append(row.paper)
pos = range(len(labels))
ax.bar([p - 0.2 for p in pos], paper, 0.4, label="paper (Table 1)")
ax.bar([p + 0.2 for p in pos], ours, 0.4, label=f"ours ({scale}, {MODEL_NAME})")
ax.set_xticks(list(pos), labels, rotation=60, ha="right", fontsize=7)
ax.set_ylabel("error (%)")
ax.legend(fontsize=8)
fig.tight_layout()
rec.figure(fig, "table1", f"Table 1's columns, the paper's numbers and ours at {scale} scale")

# %% [markdown]
# ## Paper vs ours
#
# Numbers are compared with the paper's only at `full` (the paper's network, data and
# schedule); at `smoke` and `small` the rows say `not_compared` and the claims carry the verdict.

# %%
rec.metric("process_cpu_seconds", time.process_time())  # the kernel's CPU time, all cells
display(rec.comparison(SLUG, scale))
claims = evaluate(load_claims(repro_path(SLUG)), Results.from_results(read_results(out_dir)))
display(pd.DataFrame(claims, columns=["id", "holds", "detail"]))
