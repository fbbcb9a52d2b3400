"""Training-dynamics lab: induction heads forming (Olsson et al. 2022), grokking (Nanda et al. 2023), sweeps."""
