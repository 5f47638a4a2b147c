"""Study pipeline over the :mod:`hypermask` library: DVC stages, Ray Tune + Optuna searches, MLflow tracking.

The library never imports this package; everything here is glue that reads ``params.yaml`` and
``studies/*.yaml`` and drives :func:`hypermask.train.train_continual` through its per-task callback.
"""
