"""Images as evidence in a Bayesian network: two digits and their sum.

A Bayesian CNN reads handwritten digits (scikit-learn's 8x8 digits, split with seed 0). A tiny
Bayesian network says what we know besides the pictures: two digits D1 and D2 and their sum
S = D1 + D2 (a deterministic CPT, built with pgmpy). probdl's HybridModel feeds each image's
predictive distribution into its digit node as soft evidence, divided by the class frequencies
the CNN was trained under so that the network's own prior is not counted twice. Observing the
sum of two test images then corrects the CNN's mistakes: a "3 or 8?" is settled when the other
image is clearly a 2 and the sum is 5.

The script pairs every test image twice (once as D1, once as D2), so the whole test split is
scored, and prints the digit accuracy of the CNN alone and after the network has combined both
images with the sum, both with the mean prediction and with the posterior averaged over the
CNN's weight draws (per_sample=True).

Run: python examples/05_digit_sum_hybrid.py   (PROBDL_QUICK=1: a 1-epoch CNN, a smoke test)
"""

import os

import numpy as np

from probdl import BayesianCNN, HybridModel, load_digits, split, train
from probdl.hybrid import digit_sum_accuracy, digit_sum_network

QUICK = os.environ.get("PROBDL_QUICK") == "1"
EPOCHS = 1 if QUICK else 30
SAMPLES = 4 if QUICK else 32

train_set, val_set, test_set = split(load_digits(), val=0.15, test=0.2, seed=0)
model = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
result = train(model, train_set, val_set, epochs=EPOCHS, seed=0, progress=False)
print(f"Bayesian CNN trained on {len(train_set)} digits, epochs {EPOCHS}, {result.seconds:.1f} s")

bn = digit_sum_network()
print(f"network: {bn}, S has states {bn.states['S'][0]}..{bn.states['S'][-1]}")
hybrid = HybridModel(bn, classifiers={"D1": model, "D2": model}, class_prior=train_set)

# One pair, shown in full: the CNN's belief about each image, then the network's posterior.
x1, x2 = test_set.images[:1], test_set.images[1:2]
d1, d2 = int(test_set.labels[0]), int(test_set.labels[1])
post = hybrid.query(["D1", "D2"], images={"D1": x1, "D2": x2}, evidence={"S": d1 + d2})
alone = hybrid.likelihoods({"D1": x1, "D2": x2})
for node, truth in (("D1", d1), ("D2", d2)):
    cnn = alone[node][0] * hybrid.class_priors_[node]
    print(f"  {node}: true {truth}; CNN says {cnn.argmax()} (p={cnn.max():.3f}); "
          f"with S={d1 + d2}: {post[node][0].argmax()} (p={post[node][0].max():.3f})")

print(f"\nwhole test split ({len(test_set)} images, each in two pairs with the observed sum):")
for per_sample in (False, True):
    scores = digit_sum_accuracy(hybrid, test_set, seed=0, per_sample=per_sample,
                                num_samples=SAMPLES)
    how = "averaged over weight draws" if per_sample else "mean prediction"
    print(f"  digit accuracy ({how}): CNN alone {scores['cnn_accuracy']:.4f} -> "
          f"with the sum {scores['hybrid_accuracy']:.4f}")

# Which sums leave the digits ambiguous? With perfect images none would; the network shows
# how much a sum alone says: P(D1 | S) without any image.
prior_given_s = bn.query(["D1"], evidence={"S": "9"})["D1"].to_numpy()
print(f"\nwithout images, S=9 leaves D1 spread over {int((prior_given_s > 0).sum())} digits "
      f"(max p={np.max(prior_given_s):.2f}); the images do the rest.")
