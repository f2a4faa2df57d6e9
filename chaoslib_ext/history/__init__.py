"""history: every run and suite recorded, compared and gated on."""
