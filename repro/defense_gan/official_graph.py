"""What gradient the official white-box attack received: the released reconstruction graph, run.

Paper: Samangouei, Kabkab & Chellappa, ICLR 2018, https://arxiv.org/abs/1805.06605 (v2); official
code kabkabm/defensegan at 7e3feae (TensorFlow 1.7, Python 2).
Reproduces: no table. It checks the reading behind README.md's "Threat model": that Table 4's
white-box attack (cleverhans' FGSM on the classifier with the reconstruction layer prepended,
`whitebox.py`) got no gradient through the reconstruction.

Map:
- the official reconstruction layer, `DefenseGANBase.reconstruct` (models/gan.py), and the
  generator `mnist_generator` (models/dataset_models.py), imported *unmodified* from a checkout
  of the official repository -> `build_graph`.
- cleverhans' FGSM without labels (the model's own predictions, cross-entropy, the gradient with
  respect to the input) on a classifier after that layer -> `build_graph`, `main`.

How to run it (not part of the tests: it needs TensorFlow, which the project does not depend on;
use a separate virtual environment):

    uv venv /tmp/tfenv && uv pip install --python /tmp/tfenv/bin/python tensorflow-cpu
    git clone https://github.com/kabkabm/defensegan /tmp/defensegan   # or the fetched snapshot
    2to3 -w -n -f print /tmp/defensegan/tflib/__init__.py /tmp/defensegan/tflib/ops/batchnorm.py
    /tmp/tfenv/bin/python repro/defense_gan/official_graph.py /tmp/defensegan --steps 200

(`2to3 -f print` turns the two Python 2 print statements of the official `tflib` into calls; no
other change.) The generator's weights are random: whether a gradient reaches the input is a
property of the graph, not of the weights. TensorFlow 2's v1 compatibility mode builds the loop
with TF 1's control-flow ops (Enter/Exit/NextIteration), as TF 1.7 did.

Deviations: the classifier is one linear layer (any classifier gives the same connectivity); the
official code's cleverhans is not imported (its FGSM is the three lines of `build_graph`).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import types
from typing import Any


def _shim(tf: Any) -> None:
    """Stand-ins for what the official modules import but the reconstruction never uses."""
    sys.modules["cPickle"] = pickle
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.slim = types.ModuleType("tensorflow.contrib.slim")  # type: ignore[attr-defined]
    sys.modules["tensorflow.contrib"] = contrib
    sys.modules["tensorflow.contrib.slim"] = contrib.slim  # type: ignore[attr-defined]
    tf.contrib = contrib
    sys.modules["tensorflow"] = tf
    for name in ("tflib.cifar10", "tflib.mnist", "tflib.plot", "tflib.save_images",
                 "datasets.utils", "utils.visualize", "yaml"):  # fmt: skip
        stub = types.ModuleType(name)
        stub.get_generators = None  # type: ignore[attr-defined]
        stub.save_images_files = None  # type: ignore[attr-defined]
        sys.modules[name] = stub


def build_graph(tf: Any, official: str, *, n: int, restarts: int, steps: int) -> dict[str, Any]:
    """The official reconstruction of `n` images (`restarts`, `steps`, lr 10), a linear classifier
    on it, and cleverhans' label-free FGSM gradient with respect to the input."""
    sys.path.insert(0, official)
    from models.gan import MnistDefenseGAN  # the official module, unmodified

    gan = object.__new__(MnistDefenseGAN)  # no config, dataset or checkpoint: the graph only
    gan.test_batch_size, gan.batch_size, gan.rec_rr, gan.rec_iters = n, n, restarts, steps
    gan.rec_lr, gan.latent_dim, gan.net_dim, gan.use_bn = 10.0, 128, 64, False
    gan.image_dim, gan.is_training, gan.learning_rate = [28, 28, 1], False, 1e-4
    MnistDefenseGAN._build_generator_discriminator(gan)
    images = tf.placeholder(tf.float32, [n, 28, 28, 1])
    rec = gan.reconstruct(images, batch_size=n, back_prop=True)
    w = tf.Variable(tf.random_normal([784, 10], stddev=0.05, seed=1))

    def fgsm_gradient(x: Any) -> Any:
        logits = tf.matmul(tf.reshape(x, [n, 784]), w)
        own = tf.stop_gradient(tf.one_hot(tf.argmax(logits, 1), 10))  # no labels: predictions
        loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits_v2(labels=own, logits=logits))
        return tf.gradients(loss, images)[0]

    return {"images": images, "rec": rec, "grad": fgsm_gradient(rec), "bare": fgsm_gradient(images)}


def main(argv: list[str] | None = None) -> None:
    """Build the graph, report whether any gradient reaches the input, and FGSM's distortion."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("official", help="a checkout of kabkabm/defensegan")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--n", type=int, default=4)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as real_tf

    tf = real_tf.compat.v1
    tf.disable_v2_behavior()
    _shim(tf)
    g = build_graph(tf, args.official, n=args.n, restarts=args.restarts, steps=args.steps)
    ops = {op.type for op in tf.get_default_graph().get_operations()}
    print(f"TensorFlow {real_tf.__version__}; loop ops {sorted(ops & {'Enter', 'Exit', 'While'})}; "
          f"assignments {sorted(o for o in ops if o.startswith(('Apply', 'Assign')))}")  # fmt: skip
    x = np.random.RandomState(0).rand(args.n, 28, 28, 1).astype(np.float32)
    with tf.Session() as sess:
        sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
        bare = sess.run(g["bare"], {g["images"]: x})
        print(f"bare classifier: |grad| max {np.abs(bare).max():.3e}")
        if g["grad"] is None:
            print(f"L={args.steps}, R={args.restarts}: tf.gradients(loss, input) is None: no path "
                  "from the classifier's loss back to the input carries a gradient")  # fmt: skip
            return
        grad = sess.run(g["grad"], {g["images"]: x})
        adv = np.clip(x + 0.3 * np.sign(grad), 0, 1)
        print(f"L={args.steps}, R={args.restarts}: |grad| max {np.abs(grad).max():.3e}; FGSM 0.3 "
              f"mean |x_adv - x| {np.abs(adv - x).mean():.3e}")  # fmt: skip


if __name__ == "__main__":
    main()
