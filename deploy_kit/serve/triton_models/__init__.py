"""Triton python-backend models that `deploy-kit export-triton` copies into a model repository as
`<model>/1/model.py`. They run inside Triton's python backend stub and import `deploy_kit` (and
`triton_python_backend_utils`, which only exists there) from the serving environment."""
