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
# # Explaining and Harnessing Adversarial Examples (Goodfellow, Shlens & Szegedy, ICLR 2015)
#
# The fast gradient sign method, $\eta = \epsilon\,\mathrm{sign}(\nabla_x J(\theta, x, y))$ with
# $\epsilon = 0.25$ on pixels in $[0, 1]$, not clipped (as in the paper), against
#
# 1. a shallow softmax classifier and the permutation-invariant maxout network (Section 4),
# 2. a 3-vs-7 logistic regression (Section 5),
# 3. the maxout network trained with the adversarial objective
#    $\tilde J = \alpha J(x) + (1 - \alpha) J(x + \eta)$, $\alpha = 0.5$ (Section 6), its transfer
#    attacks in both directions, and two controls trained on random noise instead of $\eta$.
#
# MNIST rows run on `mnist` when its training split is here, else on `mnist-test-split` (train on
# the first 8,000 MNIST test images, test on the last 2,000; never compared with the paper's
# numbers). The same protocol on Fashion-MNIST is a stated analogue, recorded as free metrics
# (`fashion_mnist_*`): the paper has no Fashion-MNIST numbers.

# %%
import time
from functools import partial

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from repro.config import repro_path, scale_params
from repro.data import available, load_dataset
from repro.env import pick_device, seed_everything
from repro.expected import read_expected
from repro.fgsm import (
    error_and_confidence,
    fgsm,
    maxout_network,
    sign_noise,
    softmax_classifier,
    uniform_noise,
)
from repro.record import Recorder
from repro.robust_eval import Protocol, evaluate
from repro.stats import pack_bits
from repro.train import predict, train_classifier

P = scale_params("fgsm", scale)
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
EPS = 0.25  # Section 4: MNIST, pixels in [0, 1]
ALPHA = 0.5  # Section 6: weight of the clean term in J~
attack = partial(fgsm, eps=EPS, clip=None)  # the paper does not clip
print(f"scale={scale} device={dev} params={P}")


# %%
def subset(x, y, n):
    """The first `n` examples (0 = all): deterministic, so every model sees the same data."""
    return (x, y) if not n or n >= len(y) else (x[:n], y[:n])


def load(name):
    train, test = (load_dataset(name, s, data_dir=data_dir, device=dev) for s in ("train", "test"))
    return (*subset(train.x, train.y, P["n_train"]), *subset(test.x, test.y, P["n_test"]))


def train(model, x, y, desc, adversary=None, epochs=None):
    """The toolkit's loop; adversary=None is natural training, else J~ with alpha = 0.5."""
    model.to(dev)
    start = time.perf_counter()
    losses = train_classifier(
        model,
        x,
        y,
        epochs=epochs or P["epochs"],
        batch_size=P["batch_size"],
        lr=P["lr"],
        adversary=adversary,
        adv_weight=1.0 - ALPHA,
        generator=gen,
        desc=desc,
    )
    print(f"{desc}: losses {[round(v, 4) for v in losses]} in {time.perf_counter() - start:.1f}s")
    return model


def maxout(units):
    return maxout_network(units=units, pieces=P["pieces"])


def noise(kind):
    fn = sign_noise if kind == "sign" else uniform_noise
    return partial(fn, eps=EPS, generator=gen)


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


# %%
def prefix(dataset):
    return "fashion_mnist" if dataset == "fashion_mnist" else "mnist"


def put(dataset, name, value, correct=None, **info):
    """An MNIST value is the expected.csv row `mnist_<name>`; Fashion-MNIST's a free metric.
    `correct`, the per-image vector behind an error, is kept for bootstrap intervals (claims)."""
    if correct is not None:
        info["correct"] = pack_bits(correct)
    if dataset == "fashion_mnist":
        rec.metric(f"fashion_mnist_{name}", value, **info)
    else:
        rec.row(f"mnist_{name}", value, dataset=dataset, **info)


def correct_under(model, x, y, attack_fn=None, batch_size=1000):
    """Per image: is `model` right on x, or on `attack_fn`'s examples (crafted batch by batch as
    `error_and_confidence` crafts them; FGSM is deterministic, so they are the same examples)?"""
    out = []
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        if attack_fn is not None:
            xb = attack_fn(model, xb, yb)
        out.append(predict(model, xb) == yb)
    return torch.cat(out)


def checked(error, correct):
    """The per-image vector, after checking it gives the recorded error."""
    assert abs(error - 100.0 * (1 - float(correct.double().mean()))) < 1e-6, error
    return correct


def clean_error(model, x, y):
    return error_and_confidence(model, x, y)[0]


def put_clean(dataset, name, model, x, y, **info):
    error = clean_error(model, x, y)
    put(dataset, name, error, correct=checked(error, correct_under(model, x, y)), **info)
    return error


def put_attacked(dataset, name, model, x, y, attack_fn, **info):
    """Error (and confidence on the errors) of `model` on `attack_fn`'s examples."""
    error, confidence = error_and_confidence(model, x, y, attack=attack_fn)
    correct = checked(error, correct_under(model, x, y, attack_fn))
    put(dataset, f"{name}_error", error, correct=correct, **info)
    if confidence == confidence:  # NaN when nothing was misclassified
        put(dataset, f"{name}_confidence", confidence, **info)
    return error


def crafted_on(source):
    """A transfer attack: FGSM computed on `source`, whatever model it is evaluated on."""
    return lambda _target, xb, yb: attack(source, xb, yb)


# %% [markdown]
# ## Sections 4 and 6: softmax classifier, maxout network, adversarial training, noise controls

# %%
models = {}
for ds in DATASETS:
    t0 = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load(ds)
    print(f"{ds}: {len(y_tr)} train / {len(y_te)} test")
    info = {"eps": EPS, "n_train": len(y_tr), "n_test": len(y_te), "epochs": P["epochs"]}
    units, large = P["units"], P["large_units"]

    softmax = train(softmax_classifier(), x_tr, y_tr, f"{ds} softmax")
    put_attacked(ds, "softmax_fgsm", softmax, x_te, y_te, attack, **info)

    t_nat = time.perf_counter()
    natural = train(maxout(units), x_tr, y_tr, f"{ds} maxout")
    t_adv = time.perf_counter()
    adv = train(maxout(units), x_tr, y_tr, f"{ds} maxout FGSM-AT", adversary=attack)
    epoch_seconds = {"maxout": (t_adv - t_nat) / P["epochs"],
                     "maxout_at": (time.perf_counter() - t_adv) / P["epochs"]}  # fmt: skip
    put_clean(ds, "maxout_clean_error", natural, x_te, y_te, units=units, **info)
    put_clean(ds, "maxout_at_clean_error", adv, x_te, y_te, units=units, **info)
    put_attacked(ds, "maxout_fgsm", natural, x_te, y_te, attack, units=units, **info)
    clipped = error_and_confidence(natural, x_te, y_te, attack=partial(fgsm, eps=EPS))[0]
    rec.metric(f"{prefix(ds)}_maxout_fgsm_clipped_error", clipped)

    # Section 6's "larger model" (1600 units) at full; smaller scales reuse the pair above.
    if large != units:
        natural_l = train(maxout(large), x_tr, y_tr, f"{ds} maxout-{large}")
        adv_l = train(maxout(large), x_tr, y_tr, f"{ds} maxout-{large} FGSM-AT", adversary=attack)
        put(ds, "maxout_large_clean_error", clean_error(natural_l, x_te, y_te), units=large, **info)
    else:
        natural_l, adv_l = natural, adv
        if ds != "fashion_mnist":
            why = f"the {units}-unit model stands in for the 1600-unit one at this scale"
            rec.not_run("mnist_maxout_large_clean_error", why)
    put_attacked(ds, "maxout_at_fgsm", adv_l, x_te, y_te, attack, units=large, **info)
    to_at = error_and_confidence(adv_l, x_te, y_te, attack=crafted_on(natural_l))[0]
    put(ds, "transfer_natural_to_at_error", to_at, units=large, **info)
    to_natural = error_and_confidence(natural_l, x_te, y_te, attack=crafted_on(adv_l))[0]
    put(ds, "transfer_at_to_natural_error", to_natural, units=large, **info)

    if P["noise_controls"]:
        for kind in ("sign", "uniform"):
            desc = f"{ds} maxout {kind}-noise"
            control = train(maxout(units), x_tr, y_tr, desc, adversary=noise(kind))
            put_attacked(ds, f"{kind}_noise_fgsm", control, x_te, y_te, attack, units=units, **info)
    # The project's one robustness evaluation (`repro.robust_eval`: the same battery for every
    # robust model of the project; the site's Robustness page reads it) at the notebook's eps on
    # the first `robust_n` test images: the FGSM-AT maxout network and, as the reference, the
    # natural one (the `units` pair), each with the paper's attack (FGSM at eps, not clipped).
    n_r = P["robust_n"] or len(y_te)
    protocol = Protocol(EPS, autoattack=P["robust_autoattack"],
                        attacks=tuple(P["robust_attacks"]), seed=seed)  # fmt: skip
    for name, model in (("maxout", natural), ("maxout_at", adv)):
        report = evaluate(model, x_te[:n_r], y_te[:n_r], protocol, paper_attack=attack,
                          desc=f"{ds} {name} battery")  # fmt: skip
        model_name = f"{prefix(ds)}_{name}"
        report.record(rec, model_name, dataset=ds, units=units, **info)
        rec.metric(f"cost.{model_name}.epoch_seconds", epoch_seconds[name], dataset=ds,
                   units=units, n_train=len(y_tr), batch_size=P["batch_size"])  # fmt: skip
    models[ds] = (natural, adv, x_te, y_te)
    rec.metric(f"{prefix(ds)}_seconds", time.perf_counter() - t0)

# %% [markdown]
# ## Section 5: logistic regression on MNIST 3 vs 7

# %%
if MNIST is not None:
    x_tr, y_tr, x_te, y_te = load(MNIST)

    def three_vs_seven(x, y):
        keep = (y == 3) | (y == 7)
        return x[keep], (y[keep] == 7).long()  # class 0 = digit 3, class 1 = digit 7

    x37, y37 = three_vs_seven(x_tr, y_tr)
    x37_te, y37_te = three_vs_seven(x_te, y_te)
    logreg = train(softmax_classifier(classes=2), x37, y37, "logreg 3v7", epochs=P["logreg_epochs"])
    info = {"eps": EPS, "n_train": len(y37), "n_test": len(y37_te)}
    put(MNIST, "logreg37_clean_error", clean_error(logreg, x37_te, y37_te), **info)
    fooled = error_and_confidence(logreg, x37_te, y37_te, attack=attack)[0]
    put(MNIST, "logreg37_fgsm_error", fooled, **info)

# %%
if MNIST is None:
    for exp in read_expected(repro_path("fgsm") / "expected.csv"):
        if exp.dataset == "mnist" and not exp.not_run_reason:
            rec.not_run(exp.id, "no MNIST files here (neither mnist nor its test split)")

# %% [markdown]
# ## Figure: FGSM examples and the models' predictions

# %%
ds = DATASETS[0]
natural, adv, x_te, y_te = models[ds]
x8, y8 = x_te[:8], y_te[:8]
x8_adv = attack(natural, x8, y8)
with torch.no_grad():
    p_clean = natural.eval()(x8).argmax(1)
    p_adv = natural(x8_adv).argmax(1)
    p_at = adv.eval()(attack(adv, x8, y8)).argmax(1)
fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
for i in range(8):
    axes[0, i].imshow(x8[i, 0].cpu(), cmap="gray", vmin=0, vmax=1)
    axes[0, i].set_title(f"label {int(y8[i])}\npred {int(p_clean[i])}", fontsize=8)
    axes[1, i].imshow(x8_adv[i, 0].cpu().clamp(0, 1), cmap="gray", vmin=0, vmax=1)
    axes[1, i].set_title(f"FGSM pred {int(p_adv[i])}\nAT model {int(p_at[i])}", fontsize=8)
    for row in (0, 1):
        axes[row, i].axis("off")
title = f"{ds}: FGSM at eps {EPS} against the maxout network and the adversarially trained one"
fig.suptitle(title, fontsize=9)
caption = (
    f"{ds} test images (top) and their FGSM versions at eps {EPS} (bottom, shown clipped to "
    "[0, 1]) with the predictions of the natural maxout network and of the adversarially trained "
    "one (attacked with its own FGSM)"
)
rec.figure(fig, "fgsm_examples", caption)

# %% [markdown]
# ## The paper's numbers next to ours
# The runner's own comparison (`catalog.compare.compare_run`): the table `summary.json` will hold.
# Verdicts are `not_compared` below `full` (numbers are compared with the paper at `full` only).

# %%
rec.comparison("fgsm", scale)
