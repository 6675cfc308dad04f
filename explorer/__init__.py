"""decoding-explorer: record and explore every step of how a language model decodes."""
