"""Listeners, TLS and SASL: who a connection is, and how it proved it (Kafka's security model, one node)."""
