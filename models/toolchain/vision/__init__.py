"""Vision models: Fashion-MNIST classifiers (teacher, distilled student, pruned student, INT8)."""
