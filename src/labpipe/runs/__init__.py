"""The run record: MLflow tracking, lineage, progress events, the stage view and the run report."""
