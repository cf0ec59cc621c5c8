"""What is PaddleSeg-specific: deploy.yaml, its transforms as a preprocessing spec with PaddleSeg's own
CPU arithmetic, PaddleSeg's reference pipeline, its parameter files, export helpers and the demo model.
Another model family would be a sibling package."""
