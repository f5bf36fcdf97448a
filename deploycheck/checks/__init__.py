"""The checks, one module per checklist section: inputs in, evidence out, or CheckFailed."""
