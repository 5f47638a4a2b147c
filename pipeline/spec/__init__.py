"""Settings as typed objects: params.yaml, study files and the checks they share (no Ray, MLflow or torch)."""
