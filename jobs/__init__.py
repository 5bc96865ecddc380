"""What the API, the workers and the CLI share: the job spec, the architecture catalog, and (later) job
states, settings and storage. No torch, no web framework: importing it stays cheap."""
