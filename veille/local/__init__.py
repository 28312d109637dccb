"""Local tooling: the servers and the demo a developer runs on one machine.

The local Kafka broker (and three-node cluster), the local schema registry and the demo.
Nothing on the production path imports this package (tests/veille/test_layers.py); the hub finds a
running local broker only through the state files it leaves (``Settings.kafka_bootstrap``,
``Settings.kafka_tools``).
"""
