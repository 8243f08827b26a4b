"""The paper's experiment in miniature, on a CPU."""
