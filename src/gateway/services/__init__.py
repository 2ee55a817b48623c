"""Application services: orchestrate the core and the stores."""
