"""The project folder as the stages see it: where outputs go, what trials report, stage keys and skipping."""
