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
# # Progressive Growing of GANs (Karras, Aila, Laine & Lehtinen, ICLR 2018)
#
# Paper: https://arxiv.org/abs/1710.10196. G and D start at 4 × 4 and grow by doubling the
# resolution; each new block is faded in (its output blended with the upscaled output of the
# previous block, weight α from 0 to 1) and then stabilised, the real images shown to D being
# downscaled and blended the same way. Minibatch standard deviation (D), equalized learning rate
# (both) and pixelwise feature normalisation (G) are the paper's other contributions; the loss is
# WGAN-GP plus a drift term 0.001 · E[D(x)²], with Adam (1e-3, β = (0, 0.99)) reset at every
# phase and an exponential average of G's weights as the evaluated generator.
#
# The paper's numbers (CIFAR-10 Inception score 8.80; Table 1's SWD on CelebA and LSUN) cannot be
# measured here: `expected.csv` keeps the Inception score as not run. This notebook runs the
# stated analogue on Fashion-MNIST padded to 32 × 32, grown 4 → 8 → 16 → 32:
#
# 1. the progressive run, FID (F-MNIST classifier features, never Inception numbers) of the
#    averaged G every `eval_every` real images and at the end of every phase, against training
#    FLOPs, real images shown to D and training seconds; images/s and G steps/s per phase;
# 2. the non-progressive run (the same networks and seed at 32 × 32 from the start) with the
#    same total FLOPs (the equal-compute rule), evaluated the same way;
# 3. at `full`, Table 1's ablations: the progressive run with minibatch stddev, equalized
#    learning rate or pixel norm switched off.
#
# The claims compare where the runs first reach FID ≤ T, T being the FID of real images reduced
# to 8 × 8 px, and their final FIDs.

# %%
# The toolkit, the scale's parameters, the device, the seed and the recorder
import dataclasses
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import display
from torchvision.utils import make_grid

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path, scale_params
from repro.data import available, load_dataset
from repro.env import fork_generator, pick_device, seed_everything
from repro.progan import (
    Architecture,
    equal_compute_images,
    first_reaching,
    fixed_phases,
    gaussian_latent,
    process_reals,
    progressive_phases,
    sample_images,
    train,
)
from repro.record import Recorder, read_results
from repro.sample_quality import LABEL, FIDReference, fmnist_feature_net

SLUG = "progan"
DS = "fashion_mnist"
P = scale_params(SLUG, scale)
dev = pick_device(device)
gen = seed_everything(seed)
rec = Recorder(out_dir)
print(f"scale={scale} device={dev} params={P}")
if str(dev) == "cpu":
    print(f"torch threads: {torch.get_num_threads()}")

# %% [markdown]
# ## Data, the feature network, the evaluation sets and the threshold T
#
# Fashion-MNIST's training images (the first `n_train`, 0 = all) and test images, zero-padded
# from 28 to 32 px, in [0, 1] (the networks see them in [-1, 1]). FID is computed against the
# first `n_eval` test images for the curves and the first `final_samples` for the final
# numbers; G's samples for the curves come from one fixed set of codes, so the curve's changes
# are G's, not the draw's. T is measured: the FID of `n_eval` training images reduced to 8 × 8
# px and upscaled back (what a perfect 8-px generator would score).

# %%
rec.not_run("cifar10_inception_score", "CIFAR-10 and the Inception network's weights cannot be "
            "had offline; the Fashion-MNIST analogue below is recorded as free metrics")  # fmt: skip
if not available(DS, data_dir):
    raise RuntimeError("Fashion-MNIST is not here: the analogue needs it (README.md)")


def pad32(x):
    return F.pad(x, (2, 2, 2, 2))


x_train = pad32(load_dataset(DS, "train", data_dir=data_dir, device=dev).x)
x_test = pad32(load_dataset(DS, "test", data_dir=data_dir, device=dev).x)
if P["n_train"]:
    x_train = x_train[: P["n_train"]]
real_eval = x_test[: P["n_eval"]]
real_final = x_test[: P["final_samples"]]
print(f"{DS}: {len(x_train)} training images, {len(real_eval)} / {len(real_final)} test images "
      "for the curves / the final FID, 32 x 32")  # fmt: skip

start = time.perf_counter()
EXTRACTOR = fmnist_feature_net(device=dev, data_dir=data_dir, n_train=P["fid_n_train"],
                               epochs=P["fid_epochs"], progress=False)  # fmt: skip
rec.metric("fid_extractor_test_accuracy", EXTRACTOR.test_accuracy, **EXTRACTOR.provenance())
rec.metric("fid_extractor_seconds", time.perf_counter() - start)
print(f"FID extractor ({LABEL}): test accuracy {EXTRACTOR.test_accuracy:.3f}, "
      f"sha256 {EXTRACTOR.sha256[:12]}")  # fmt: skip

ARCH = Architecture(channels=tuple(P["channels"]), latent_dim=P["latent_dim"])
Z_EVAL = gaussian_latent(ARCH.z_dim)(P["n_eval"], fork_generator(gen, device=dev))
Z_GRID = gaussian_latent(ARCH.z_dim)(P["grid"], fork_generator(gen, device=dev))
FINAL_SEEDS = [int(torch.randint(0, 2**62, (1,), generator=gen)) for _ in range(P["final_draws"])]

FID_EVAL = FIDReference(real_eval, EXTRACTOR)  # the real features, embedded once
FID_FINAL = FIDReference(real_final, EXTRACTOR)
reference = {}
for res, lod in ((4, 3.0), (8, 2.0), (16, 1.0)):
    reduced = process_reals(x_train[: P["n_eval"]], lod)
    reference[res] = rec.metric(f"{DS}_real_{res}px_fid", FID_EVAL(reduced),
                                metric=f"FID ({LABEL})", n=P["n_eval"])  # fmt: skip
THRESHOLD = rec.metric(f"{DS}_fid_threshold", reference[8], rule="FID of real images at 8 x 8 px",
                       n=P["n_eval"], sha256=EXTRACTOR.sha256)  # fmt: skip
print(f"FID of real training images reduced to 4 / 8 / 16 px: {reference[4]:.1f} / "
      f"{reference[8]:.1f} / {reference[16]:.1f}; T = {THRESHOLD:.1f}")  # fmt: skip


def fid_curve(generator):
    """FID of the averaged G's samples of the fixed codes against the evaluation test images."""
    return FID_EVAL(sample_images(generator, Z_EVAL))


def final_fids(generator):
    """FID of `final_draws` independent draws of `final_samples` samples."""
    out = []
    for s in FINAL_SEEDS:
        z = gaussian_latent(ARCH.z_dim)(
            P["final_samples"], torch.Generator(device=dev).manual_seed(s)
        )
        out.append(FID_FINAL(sample_images(generator, z)))
    return out


# %% [markdown]
# ## Training and recording
#
# One `train` call per run; every run starts from the same seed (the same initial networks for
# the progressive and the non-progressive run, the same stream of batches and codes). Per run
# this records the training cost (GFLOPs, seconds, real images, G steps, images/s, G steps/s,
# per phase too), the curve, where it first reached FID ≤ T, and the final FIDs.

# %%
RUNS = {}


def record_run(tag, run):
    """The run's metrics `fashion_mnist_<tag>_*` (claims.py reads them)."""
    m = f"{DS}_{tag}"
    rec.metric(f"{m}_total_gflops", run.flops / 1e9)
    rec.metric(f"{m}_total_seconds", run.seconds)
    rec.metric(f"{m}_images", run.images)
    rec.metric(f"{m}_g_steps", run.g_steps)
    rec.metric(f"{m}_images_per_second", run.images / run.seconds)
    rec.metric(f"{m}_g_steps_per_second", run.g_steps / run.seconds)
    for s in run.phases:
        rec.metric(f"{m}_{s.name}_images_per_second", s.images_per_second, images=s.images,
                   seconds=s.seconds, gflops_per_iteration=s.flops_per_iteration / 1e9)  # fmt: skip
        rec.metric(f"{m}_{s.name}_g_steps_per_second", s.g_steps_per_second, g_steps=s.g_steps)
    curve = [dataclasses.asdict(p) for p in run.curve]
    hit = first_reaching(run.curve, THRESHOLD)
    rec.metric(f"{m}_reached_threshold", 0 if hit is None else 1, threshold=THRESHOLD,
               curve=curve)  # fmt: skip
    if hit is not None:
        rec.metric(f"{m}_gflops_to_threshold", hit.flops / 1e9, phase=hit.phase)
        rec.metric(f"{m}_seconds_to_threshold", hit.seconds, phase=hit.phase)
        rec.metric(f"{m}_images_to_threshold", hit.images, phase=hit.phase)
    draws = final_fids(run.average)
    rec.metric(f"{m}_final_fid", sum(draws) / len(draws), draws=draws, n=P["final_samples"],
               metric=f"FID ({LABEL})", sha256=EXTRACTOR.sha256)  # fmt: skip
    rec.metric(f"{m}_final_fid_min", min(draws))
    rec.metric(f"{m}_final_fid_max", max(draws))
    reached = "never" if hit is None else f"at {hit.flops / 1e9:.1f} GFLOPs / {hit.seconds:.0f} s"
    print(f"{tag}: {run.images} images, {run.g_steps} G steps, {run.flops / 1e9:.1f} GFLOPs, "
          f"{run.seconds:.0f} s ({run.images / run.seconds:.0f} images/s); FID <= T {reached}; "
          f"final FID {min(draws):.1f}-{max(draws):.1f}")  # fmt: skip
    RUNS[tag] = run


def fit(tag, arch, phases):
    return train(
        x_train, arch=arch, phases=phases, batch_size=P["batch_size"], seed=seed,
        ema_half_life_images=P["ema_half_life_images"], evaluate=fid_curve,
        eval_every=P["eval_every"], grid_z=Z_GRID, desc=tag,
    )  # fmt: skip


PHASES = progressive_phases(32, P["images_per_phase"], P["final_images"])
record_run("progressive", fit("progressive", ARCH, PHASES))
budget = RUNS["progressive"].flops
baseline_images = equal_compute_images(budget, ARCH, x_train, batch_size=P["batch_size"])
rec.metric(f"{DS}_nonprogressive_budget_images", baseline_images, gflops=budget / 1e9,
           rule="whole iterations at 32 px spending the progressive run's FLOPs")  # fmt: skip
record_run("nonprogressive", fit("nonprogressive", ARCH, fixed_phases(32, baseline_images)))

ABLATIONS = {
    "no_mbstd": {"mbstd_group_size": 0},
    "no_wscale": {"use_wscale": False},
    "no_pixelnorm": {"use_pixelnorm": False},
}
for name in P["ablations"]:
    record_run(name, fit(name, dataclasses.replace(ARCH, **ABLATIONS[name]), PHASES))

# %% [markdown]
# ## Cost and quality, side by side

# %%
M = {m["name"]: m["value"] for m in read_results(out_dir)["metrics"]}
table = pd.DataFrame(
    {
        tag: {
            "GFLOPs": M[f"{DS}_{tag}_total_gflops"],
            "train s": M[f"{DS}_{tag}_total_seconds"],
            "images": M[f"{DS}_{tag}_images"],
            "images/s": M[f"{DS}_{tag}_images_per_second"],
            "G steps/s": M[f"{DS}_{tag}_g_steps_per_second"],
            "GFLOPs to T": M.get(f"{DS}_{tag}_gflops_to_threshold"),
            "s to T": M.get(f"{DS}_{tag}_seconds_to_threshold"),
            "final FID": M[f"{DS}_{tag}_final_fid"],
            "min": M[f"{DS}_{tag}_final_fid_min"],
            "max": M[f"{DS}_{tag}_final_fid_max"],
        }
        for tag in RUNS
    }
).T
print(f"T = {THRESHOLD:.1f} (FID of real images at 8 x 8 px); FID ({LABEL})")
display(table.round(2))
phases = pd.DataFrame(
    [{"run": tag, "phase": s.name, "images": s.images, "seconds": s.seconds,
      "images/s": s.images_per_second, "G steps/s": s.g_steps_per_second,
      "GFLOPs/iteration": s.flops_per_iteration / 1e9}
     for tag in ("progressive", "nonprogressive") for s in RUNS[tag].phases]
)  # fmt: skip
display(phases.round(3))

# %% [markdown]
# ## Figures: quality against compute, images and time; samples at every phase

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
for tag, run in RUNS.items():
    style = {"progressive": "-", "nonprogressive": "--"}.get(tag, ":")
    for ax, key, scale_by in zip(axes, ("flops", "images", "seconds"), (1e9, 1, 1), strict=True):
        ax.plot([getattr(p, key) / scale_by for p in run.curve], [p.value for p in run.curve],
                style, marker="o", ms=3, label=tag)  # fmt: skip
for ax, label in zip(axes, ("training GFLOPs", "real images shown to D", "training seconds"),
                     strict=True):  # fmt: skip
    ax.axhline(THRESHOLD, color="gray", lw=0.8, ls=":", label="T (real images at 8 px)")
    ax.set(xlabel=label, ylabel=f"FID ({LABEL})", yscale="log")
    ax.legend(fontsize=7)
edges, total = [], 0.0
for s in RUNS["progressive"].phases:
    total += s.iterations * s.flops_per_iteration / 1e9
    edges.append(total)
for e in edges[:-1]:
    axes[0].axvline(e, color="k", lw=0.4, alpha=0.3)
axes[0].set_title("progressive phases: thin vertical lines")
fig.tight_layout()
rec.figure(fig, "fid_curves", f"FID ({LABEL}) of the averaged G against training compute, real "
           "images shown to D and training seconds, for the progressive run, the "
           "non-progressive run with the same FLOPs and any ablations; T dotted")  # fmt: skip
plt.close(fig)

names = list(RUNS["progressive"].grids)
fig, axes = plt.subplots(1, len(names) + 1, figsize=(2.6 * (len(names) + 1), 3.0))
nrow = int(P["grid"] ** 0.5)
for ax, name in zip(axes, names, strict=False):
    ax.imshow(make_grid(RUNS["progressive"].grids[name], nrow=nrow, padding=1)[0], cmap="gray",
              vmin=0, vmax=1)  # fmt: skip
    ax.set_title(f"progressive, end of {name}", fontsize=8)
    ax.axis("off")
last = list(RUNS["nonprogressive"].grids.values())[-1]
axes[-1].imshow(make_grid(last, nrow=nrow, padding=1)[0], cmap="gray", vmin=0, vmax=1)
axes[-1].set_title("non-progressive, end", fontsize=8)
axes[-1].axis("off")
fig.tight_layout()
rec.figure(fig, "samples_by_phase", "the averaged G on fixed codes at the end of every phase of "
           "the progressive run, and the non-progressive run's at its end")  # fmt: skip
plt.close(fig)

fig, ax = plt.subplots(figsize=(7, 3.4))
prog = RUNS["progressive"].phases
ax.bar([s.name for s in prog], [s.images_per_second for s in prog], label="progressive")
ax.axhline(RUNS["nonprogressive"].phases[0].images_per_second, color="C1", ls="--",
           label="non-progressive (32 px throughout)")  # fmt: skip
ax.set(ylabel="real images / s (training)", title="throughput per phase")
ax.tick_params(axis="x", labelsize=7)
ax.legend(fontsize=7)
fig.tight_layout()
rec.figure(fig, "throughput", "training images per second in every phase of the progressive run "
           "and in the non-progressive run (on this run's device and threads)")  # fmt: skip
plt.close(fig)

# %% [markdown]
# ## Paper vs ours
#
# The CIFAR-10 Inception score is not run here; the claims are checked on the Fashion-MNIST
# analogue (the ablation claims need `full`).

# %%
display(rec.comparison(SLUG, scale))
claims = evaluate(load_claims(repro_path(SLUG)), Results.from_results(read_results(out_dir)))
display(pd.DataFrame(claims, columns=["id", "holds", "detail"]))
