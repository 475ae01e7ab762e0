"""Who is calling: Fence tokens and their keys, a trusted peer's REMOTE_USER, the dev issuer."""
