"""Ways to run a converted model, each behind `base.Backend`, listed in `registry.BACKENDS`."""
