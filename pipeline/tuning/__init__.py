"""One resumable Ray Tune experiment of a study stage: runner, trainable, search, Optuna journal, trial storage."""
