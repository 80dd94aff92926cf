"""The webhook gateway: verify, deduplicate, normalize and publish signals to JetStream."""
