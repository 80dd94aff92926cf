"""NATS JetStream plumbing: connect, provision, publish with ids, durable pull consumption, embedded server."""
