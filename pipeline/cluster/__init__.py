"""Ray: connecting to a cluster or starting a local one, placing trials on its nodes, submitting stages as jobs."""
