"""The model registry: the production model, publishing, and Kubeflow Model Registry."""
