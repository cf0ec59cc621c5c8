"""What is PaddleSeg-specific: deploy.yaml, its transforms as a preprocessing spec with PaddleSeg's own
CPU arithmetic, PaddleSeg's reference pipeline, its parameter files, export helpers and the demo model.
Another model family would be a sibling package."""

import warnings

# Paddle warns at import that ccache is missing: that concerns compiling Paddle's C++ extensions, which
# deploy-kit never does.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
