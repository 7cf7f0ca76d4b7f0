"""Stream processing on the Kafka protocol. The framework arrives in a later issue."""
