"""One module per DVC stage or command: ``python -m pipeline <stage>`` runs its ``run`` (or ``run_command``)."""
