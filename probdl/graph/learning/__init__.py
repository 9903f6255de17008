"""Learning a network from rows: counts, EM with missing cells and latent variables, structure.

    from probdl.graph import BayesNet, learn_structure
    rows = BayesNet.example("asia").sample(2000, seed=0)
    bn = learn_structure(rows)                       # structure.py: hill climbing
    fitted = bn.fit(rows, method="bayes")            # counts.py (complete rows), em.py (holes)

EM's expected counts come from the inference engine: sum over rows of P(family | row).
"""
