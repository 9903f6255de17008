"""Bayesian CNNs trained by Pyro SVI, with MAP and MC-dropout baselines in the same API.

    from probdl.bnn import BayesianCNN, evaluate, predict, train
    from probdl.data import load_digits, split
    tr, va, te = split(load_digits(), val=0.15, test=0.2, seed=0)
    model = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    train(model, tr, va, epochs=30)       # objective=ELBO(), optim=Optim(), inputs=Inputs()
    print(evaluate(model, te, num_samples=32))
    model.save("model.pt"); model = BayesianCNN.load("model.pt")

The model (architecture, prior, variational family), the objective (:mod:`.objectives`) and the
trainer (:func:`train`) are separate pieces, as Pyro's ``SVI(model, guide, optim, loss)``.
"""

from probdl.bnn.base import CNNBase, load_model
from probdl.bnn.baselines import DeterministicCNN, MCDropoutCNN
from probdl.bnn.calibration import fit_temperature
from probdl.bnn.models import BayesianCNN
from probdl.bnn.objectives import ELBO, MAP, Likelihood
from probdl.bnn.options import Inputs, Optim
from probdl.bnn.prediction import Prediction, evaluate, predict, score
from probdl.bnn.training import TrainResult, train

__all__ = [
    "ELBO",
    "MAP",
    "BayesianCNN",
    "CNNBase",
    "DeterministicCNN",
    "Inputs",
    "Likelihood",
    "MCDropoutCNN",
    "Optim",
    "Prediction",
    "TrainResult",
    "evaluate",
    "fit_temperature",
    "load_model",
    "predict",
    "score",
    "train",
]
