"""What the outputs say: comparisons, search analysis, rung check, plots, sweep sections (pure, no side effects)."""
