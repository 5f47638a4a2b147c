"""MLflow: runs of stages and trials, models, what a run was made from, the published report."""
