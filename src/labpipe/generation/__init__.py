"""Teacher clients, flows and prompts for synthetic data generation."""
